// A readers-writer lock inside one flickd. Pushes take it shared (many at
// once); garbage collection takes it exclusive, so a collection never sees a
// half-made manifest and a push never loses a blob to a sweep in progress.

export class RwLock {
  #readers = 0;
  #writer = false;
  #waiters: Array<{ exclusive: boolean; wake: () => void }> = [];

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire(false);
    try {
      return await fn();
    } finally {
      this.#readers--;
      this.#drain();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire(true);
    try {
      return await fn();
    } finally {
      this.#writer = false;
      this.#drain();
    }
  }

  #acquire(exclusive: boolean): Promise<void> {
    // Queued writers block new readers, so a steady stream of pushes cannot starve a collection.
    const free = exclusive ? !this.#writer && this.#readers === 0 : !this.#writer && this.#waiters.length === 0;
    if (free) {
      if (exclusive) this.#writer = true;
      else this.#readers++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiters.push({ exclusive, wake: resolve }));
  }

  #drain(): void {
    while (this.#waiters.length > 0 && !this.#writer) {
      const next = this.#waiters[0]!;
      if (next.exclusive) {
        if (this.#readers > 0) return;
        this.#waiters.shift();
        this.#writer = true;
        next.wake();
        return;
      }
      this.#waiters.shift();
      this.#readers++;
      next.wake();
    }
  }
}

/** Serializes work per key (one upload session's PATCHes, one tag's writes). */
export class KeyedMutex {
  #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.#tails.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}
