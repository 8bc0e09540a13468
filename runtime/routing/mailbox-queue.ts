/** A FIFO with O(1) push and shift (Array#shift is O(n) once a queue grows). */
export class Queue<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /**
   * Lets go of the backing store when empty: an idle mailbox then holds no array (V8 gives an
   * array 17 slots at its first push, and this queue grows to 1,024 before it shifts down).
   */
  release(): void {
    if (this.head > 0 && this.head >= this.items.length) {
      this.items = [];
      this.head = 0;
    }
  }

  get length(): number {
    return this.items.length - this.head;
  }

  clear(): T[] {
    const rest = this.items.slice(this.head) as T[];
    this.items = [];
    this.head = 0;
    return rest;
  }
}
