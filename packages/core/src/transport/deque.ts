/**
 * A FIFO queue as an array plus a head index. `Array#shift()` copies the array, which on a backlog
 * of thousands of deliveries costs O(n) per message (measured on the consume path); this costs O(1) and
 * compacts only when the consumed prefix outgrows the rest. Drivers and core share it.
 */
export class Deque<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  /** Puts an item back at the front (a release that must be seen first). */
  unshift(item: T): void {
    if (this.#head > 0) this.#items[--this.#head] = item;
    else this.#items.unshift(item);
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    this.#compact();
    return item;
  }

  /** The `index`-th item from the front, without removing it. */
  at(index: number): T | undefined {
    return this.#items[this.#head + index];
  }

  /** Removes and returns the `index`-th item from the front (O(n): for the rare out-of-order take). */
  removeAt(index: number): T | undefined {
    if (index === 0) return this.shift();
    return this.#items.splice(this.#head + index, 1)[0];
  }

  /** Removes and returns every item, front first. */
  drain(): T[] {
    const out = this.#items.slice(this.#head) as T[];
    this.#items = [];
    this.#head = 0;
    return out;
  }

  #compact(): void {
    if (this.#head === this.#items.length) {
      this.#items.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
  }
}
