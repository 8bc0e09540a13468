import { ErrorCodes, KeyhopError } from '../../../errors.js';

type Starter<T> = (resolve: (value: T) => void, reject: (error: unknown) => void) => void;

/**
 * In-flight stack operations (connect, discovery, subscribe, advertise...). noble and bleno
 * report outcomes through events that may never come (lost controller, a peer that stops
 * answering), so every operation gets a deadline, and a lost controller or stop() fails all of
 * them at once. Timers are cleared on settlement: nothing keeps the process alive.
 */
export class PendingOps {
  private readonly rejects = new Set<(error: KeyhopError) => void>();

  run<T>(what: string, timeoutMs: number, start: Starter<T>, onTimeout?: () => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const settle = (): boolean => {
        if (done) return false;
        done = true;
        clearTimeout(timer);
        this.rejects.delete(fail);
        return true;
      };
      const fail = (error: unknown): void => {
        if (settle()) reject(error);
      };
      const timer = setTimeout(() => {
        if (!settle()) return;
        try {
          onTimeout?.();
        } finally {
          reject(new KeyhopError(ErrorCodes.TIMEOUT, `BLE: ${what} timed out after ${timeoutMs} ms`));
        }
      }, timeoutMs);
      this.rejects.add(fail);
      try {
        start((value) => {
          if (settle()) resolve(value);
        }, fail);
      } catch (e) {
        fail(e);
      }
    });
  }

  /** Fails every operation still in flight. */
  failAll(error: KeyhopError): void {
    for (const r of [...this.rejects]) r(error);
  }
}
