/**
 * Bytes a group of incoming connections holds in memory: frames partly received and messages
 * received but not yet handled. One per source address, within one per listener: what peers make
 * this node hold is bounded by configuration, not by how many connections they open.
 */
export class HeldBytes {
  held = 0;

  constructor(
    readonly limit: number,
    readonly parent?: HeldBytes,
  ) {}

  /** Adds `delta` (negative: given back) here and in the parent; false when either is over its limit. */
  add(delta: number): boolean {
    this.held += delta;
    const parentOk = this.parent === undefined || this.parent.add(delta);
    return parentOk && this.held <= this.limit;
  }
}
