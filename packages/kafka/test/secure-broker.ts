import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CertFiles, freePort, type TestPki } from '@busbar/testing';
import kafkajs from 'kafkajs';
import { clusterId, KraftNode } from './kraft.js';

const { AclOperationTypes, AclPermissionTypes, AclResourceTypes, Kafka, logLevel, ResourcePatternTypes } = kafkajs;

/** The SCRAM-SHA-512 user made at format time, and the topic an ACL forbids it. */
export const SCRAM_USER = 'busbar-app';

/**
 * One private KRaft node with a listener per security case, started once per test file:
 * - `plain`: PLAINTEXT, for the broker itself (inter-broker, controller) and the test's admin client;
 * - `tls`: TLS with the server certificate, no client certificate;
 * - `mtls`: TLS that requires a client certificate signed by the test CA;
 * - `sasl`: SASL_SSL with SCRAM-SHA-512 (the user is created at format time);
 * - `expired`, `wrongHost`: TLS with the expired and the wrong-host server certificates.
 * StandardAuthorizer: ANONYMOUS (the PLAINTEXT and TLS-only listeners) is a super user; every other
 * principal may do everything except on `forbiddenTopic`, which SCRAM_USER may not touch.
 */
export class SecureBroker {
  readonly ports: {
    plain: number;
    controller: number;
    tls: number;
    mtls: number;
    sasl: number;
    expired: number;
    wrongHost: number;
  };
  readonly password: string;
  readonly forbiddenTopic: string;
  readonly #dir: string;
  readonly #node: KraftNode;

  private constructor(dir: string, ports: SecureBroker['ports'], pki: TestPki, password: string, forbidden: string) {
    this.#dir = dir;
    this.ports = ports;
    this.password = password;
    this.forbiddenTopic = forbidden;
    // PEM stores: one file with the key and the certificate chain, the CA alone as the trust store.
    const keystore = (name: string, files: CertFiles) => {
      const path = join(dir, `${name}.pem`);
      writeFileSync(path, `${pki.pem(files.key)}\n${pki.pem(files.cert)}`);
      return path;
    };
    const server = keystore('server', pki.server);
    const listener = (name: string, files: CertFiles) => ({
      [`listener.name.${name}.ssl.keystore.type`]: 'PEM',
      [`listener.name.${name}.ssl.keystore.location`]: keystore(name, files),
    });
    const names = ['PLAIN', 'TLS', 'MTLS', 'SASL', 'EXPIRED', 'WRONGHOST'] as const;
    const port = {
      PLAIN: ports.plain,
      TLS: ports.tls,
      MTLS: ports.mtls,
      SASL: ports.sasl,
      EXPIRED: ports.expired,
      WRONGHOST: ports.wrongHost,
    };
    const client = names.map((n) => `${n}://127.0.0.1:${port[n]}`).join(',');
    this.#node = new KraftNode(
      dir,
      {
        'process.roles': 'broker,controller',
        'node.id': 1,
        'controller.quorum.voters': `1@127.0.0.1:${ports.controller}`,
        listeners: `${client},CONTROLLER://127.0.0.1:${ports.controller}`,
        'advertised.listeners': client,
        'controller.listener.names': 'CONTROLLER',
        'inter.broker.listener.name': 'PLAIN',
        'listener.security.protocol.map':
          'PLAIN:PLAINTEXT,CONTROLLER:PLAINTEXT,TLS:SSL,MTLS:SSL,SASL:SASL_SSL,EXPIRED:SSL,WRONGHOST:SSL',
        'ssl.keystore.type': 'PEM',
        'ssl.keystore.location': server,
        'ssl.truststore.type': 'PEM',
        'ssl.truststore.location': pki.ca,
        'listener.name.mtls.ssl.client.auth': 'required',
        ...listener('expired', pki.expired),
        ...listener('wronghost', pki.wrongHost),
        'sasl.enabled.mechanisms': 'SCRAM-SHA-512',
        'listener.name.sasl.scram-sha-512.sasl.jaas.config':
          'org.apache.kafka.common.security.scram.ScramLoginModule required;',
        'authorizer.class.name': 'org.apache.kafka.metadata.authorizer.StandardAuthorizer',
        'super.users': 'User:ANONYMOUS',
        'log.dirs': join(dir, 'data'),
        'num.partitions': 1,
        'default.replication.factor': 1,
        'min.insync.replicas': 1,
        'auto.create.topics.enable': false,
        'offsets.topic.replication.factor': 1,
        'offsets.topic.num.partitions': 4,
        'transaction.state.log.replication.factor': 1,
        'transaction.state.log.min.isr': 1,
        'group.initial.rebalance.delay.ms': 0,
        'group.min.session.timeout.ms': 1000,
        'num.network.threads': 2,
        'num.io.threads': 2,
      },
      ports.plain,
    );
  }

  /** Formats (with the SCRAM user), starts, and sets the ACLs. */
  static async start(pki: TestPki, password: string, forbiddenTopic: string): Promise<SecureBroker> {
    const ports = {
      plain: await freePort(),
      controller: await freePort(),
      tls: await freePort(),
      mtls: await freePort(),
      sasl: await freePort(),
      expired: await freePort(),
      wrongHost: await freePort(),
    };
    const dir = mkdtempSync(join(tmpdir(), 'busbar-kafka-secure-'));
    const broker = new SecureBroker(dir, ports, pki, password, forbiddenTopic);
    try {
      await broker.#node.format(clusterId(), [
        '--add-scram',
        `SCRAM-SHA-512=[name=${SCRAM_USER},password=${password}]`,
      ]);
      await broker.#node.start();
      await broker.#grant();
    } catch (error) {
      await broker.stop();
      throw error;
    }
    return broker;
  }

  async #grant(): Promise<void> {
    const admin = new Kafka({ brokers: [`127.0.0.1:${this.ports.plain}`], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      const acl = (resourceType: number, resourceName: string, principal: string, permissionType: number) => ({
        resourceType,
        resourceName,
        resourcePatternType: ResourcePatternTypes.LITERAL,
        principal,
        host: '*',
        operation: AclOperationTypes.ALL,
        permissionType,
      });
      await admin.createTopics({ waitForLeaders: true, topics: [{ topic: this.forbiddenTopic, numPartitions: 1 }] });
      await admin.createAcls({
        acl: [
          acl(AclResourceTypes.TOPIC, '*', 'User:*', AclPermissionTypes.ALLOW),
          acl(AclResourceTypes.GROUP, '*', 'User:*', AclPermissionTypes.ALLOW),
          acl(AclResourceTypes.CLUSTER, 'kafka-cluster', 'User:*', AclPermissionTypes.ALLOW),
          acl(AclResourceTypes.TOPIC, this.forbiddenTopic, `User:${SCRAM_USER}`, AclPermissionTypes.DENY),
        ],
      });
    } finally {
      await admin.disconnect();
    }
  }

  /** Stops the node (SIGTERM, then SIGKILL) and removes its directory. */
  async stop(): Promise<void> {
    await this.#node.stop(20_000).catch(() => this.#node.kill());
    rmSync(this.#dir, { recursive: true, force: true });
  }

  tail(): string {
    return this.#node.tail();
  }
}
