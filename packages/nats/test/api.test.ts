import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { hedgeApi } from '../src/api.js';

const unavailable = () =>
  Object.assign(new Error('JetStream system temporarily unavailable'), { api_error: { err_code: 10008 } });
const refused = () => Object.assign(new Error('stream name already in use'), { api_error: { err_code: 10058 } });

describe('hedgeApi', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('asks again every 5 s while no answer came, and takes the first answer (a late one too)', async () => {
    const answers: ((value: string) => void)[] = [];
    const call = vi.fn(() => new Promise<string>((resolve) => answers.push(resolve)));
    const result = hedgeApi(20_000, call);
    await vi.advanceTimersByTimeAsync(4_999);
    expect(call).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(call).toHaveBeenCalledTimes(2);
    answers[0]?.('late');
    await expect(result).resolves.toBe('late');
    await vi.advanceTimersByTimeAsync(30_000);
    expect(call).toHaveBeenCalledTimes(2);
  });

  it('retries "temporarily unavailable" after a growing pause, and rejects an answer that is no at once', async () => {
    let n = 0;
    const call = vi.fn(async () => {
      if (++n < 4) throw unavailable();
      return 'ok';
    });
    const result = hedgeApi(20_000, call);
    await vi.advanceTimersByTimeAsync(49);
    expect(call).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(2_000);
    await expect(result).resolves.toBe('ok');
    expect(call).toHaveBeenCalledTimes(4);

    const no = vi.fn(async () => {
      throw refused();
    });
    await expect(hedgeApi(20_000, no)).rejects.toMatchObject({ api_error: { err_code: 10058 } });
    expect(no).toHaveBeenCalledTimes(1);
  });

  it('gives up when the budget is spent: the last error, or TIMEOUT when nothing answered', async () => {
    const silent = vi.fn(() => new Promise<string>(() => undefined));
    const waited = hedgeApi(12_000, silent);
    waited.catch(() => undefined);
    await vi.advanceTimersByTimeAsync(12_000);
    await expect(waited).rejects.toMatchObject({ code: 'TIMEOUT' });
    // At 0, 5 and 10 s; none after the budget.
    expect(silent).toHaveBeenCalledTimes(3);

    const busy = vi.fn(async () => {
      throw unavailable();
    });
    const refusedLate = hedgeApi(3_000, busy);
    refusedLate.catch(() => undefined);
    await vi.advanceTimersByTimeAsync(3_000);
    await expect(refusedLate).rejects.toMatchObject({ api_error: { err_code: 10008 } });
    const calls = busy.mock.calls.length;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(busy).toHaveBeenCalledTimes(calls);
  });
});
