import kafkajs from 'kafkajs';

// kafkajs is CommonJS and Node's ESM loader cannot see all of its named
// exports (CompressionCodecs, for one): take them from the default export.
export const { Kafka, AssignerProtocol, CompressionCodecs, CompressionTypes, logLevel } = kafkajs;
