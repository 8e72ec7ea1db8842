/**
 * Consumer lag as busbar's metrics read it: a watched bus is read through
 * `bus.lag()` (its transport's `lag`, where the driver has one), and any
 * other source (a broker admin query of your own) plugs in as a
 * {@link LagSource}. Same shape as core's `GroupLag`, with `group` optional
 * for topic-level readings such as a stream's length.
 */
export interface LagReading {
  readonly topic: string;
  readonly group?: string;
  /** Messages stored for the group that it has not received yet. */
  readonly lag?: number;
  /** Delivered to a member but not settled yet. */
  readonly pending?: number;
  /** Messages the broker holds for the topic. */
  readonly backlog?: number;
}

/** Called at each scrape; may be async. A source that throws is skipped for that scrape. */
export type LagSource = () => Promise<readonly LagReading[]> | readonly LagReading[];

interface LagCapable {
  lag(): Promise<readonly LagReading[]> | readonly LagReading[];
}

function hasLag(value: object): value is LagCapable {
  return typeof (value as { lag?: unknown }).lag === 'function';
}

/** A lag source reading `bus.lag()`, or undefined for a health source without `lag()`. */
export function busLagSource(bus: object): LagSource | undefined {
  if (!hasLag(bus)) return undefined;
  return () => bus.lag();
}

/** A count a gauge can take: a finite number >= 0 (a bigint, as admin APIs return offsets, is converted). */
function count(value: unknown): number | undefined {
  const n = typeof value === 'bigint' ? Number(value) : value;
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 ? n : undefined;
}

/**
 * The well-formed readings of what a source returned. prom-client throws on a
 * value that is not a number, and a throw in one gauge's collect fails the
 * whole scrape: one source returning `lag: '12'` or `[null]` must cost only
 * its own readings, not every busbar (and application) metric.
 */
function wellFormed(value: unknown): LagReading[] {
  if (!Array.isArray(value)) return [];
  const out: LagReading[] = [];
  for (const item of value as unknown[]) {
    if (typeof item !== 'object' || item === null) continue;
    const { topic, group, lag, pending, backlog } = item as Record<string, unknown>;
    if (typeof topic !== 'string' || topic.length === 0) continue;
    if (group !== undefined && typeof group !== 'string') continue;
    const reading: { -readonly [K in keyof LagReading]: LagReading[K] } = { topic };
    if (group !== undefined) reading.group = group;
    for (const [field, raw] of [
      ['lag', lag],
      ['pending', pending],
      ['backlog', backlog],
    ] as const) {
      const n = count(raw);
      if (n !== undefined) reading[field] = n;
    }
    out.push(reading);
  }
  return out;
}

/** Reads every source, at most `timeoutMs` each, so one slow broker query cannot stall a scrape. */
export async function readLag(sources: Iterable<LagSource>, timeoutMs: number): Promise<LagReading[]> {
  const readings = await Promise.all(
    [...sources].map(async (source) => {
      let timer: NodeJS.Timeout | undefined;
      try {
        const timeout = new Promise<readonly LagReading[]>((resolve) => {
          timer = setTimeout(() => resolve([]), timeoutMs);
        });
        return wellFormed(await Promise.race([Promise.resolve().then(source), timeout]));
      } catch {
        return [];
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return readings.flat();
}
