import { describe, expect, it } from 'vitest';
import { Address } from './address.js';
import { FlowControls } from './flow-control.js';

const a = Address.local('a');
const b = Address.local('b');

describe('FlowControls', () => {
  it('admits consumers of a flow and of its parent, and nothing else', () => {
    const fc = new FlowControls();
    const listener = fc.create();
    const conn = fc.create(listener);
    fc.addConsumer(listener, a);
    fc.addConsumer(conn, b);
    expect(fc.isConsumer(a, conn)).toBe(true);
    expect(fc.isConsumer(b, conn)).toBe(true);
    expect(fc.isConsumer(b, listener)).toBe(false);
    expect(fc.isConsumer(Address.local('c'), conn)).toBe(false);
  });

  it('admits every transport address of a group exposed as `type#group/*`, never a local one', () => {
    const fc = new FlowControls();
    const listener = fc.create();
    const conn = fc.create(listener);
    fc.addConsumer(listener, Address.parse('7#fleet/*'));
    expect(fc.isConsumer(Address.parse('7#fleet/sensor-1'), conn)).toBe(true);
    expect(fc.isConsumer(Address.parse('7#fleet/sensor-2'), listener)).toBe(true);
    expect(fc.isConsumer(Address.parse('7#other/sensor-1'), conn)).toBe(false);
    expect(fc.isConsumer(Address.parse('7#fleet'), conn)).toBe(false);
    expect(fc.isConsumer(Address.parse('1#fleet/x'), conn)).toBe(false);
    fc.addConsumer(conn, Address.parse('0#fleet/*'));
    expect(fc.isConsumer(Address.local('fleet/x'), conn)).toBe(false);
  });

  it('forgets an address in every flow, and removes flows from the index', () => {
    const fc = new FlowControls();
    const f1 = fc.create();
    const f2 = fc.create();
    fc.addConsumer(f1, a);
    fc.addConsumer(f2, a);
    expect(fc.flowsOf(a).sort()).toEqual([f1, f2].sort());
    fc.remove(f1);
    expect(fc.flowsOf(a)).toEqual([f2]);
    fc.forget(a);
    expect(fc.isConsumer(a, f2)).toBe(false);
    expect(fc.flowsOf(a)).toEqual([]);
  });

  it('copies a spawner exposure to a spawned worker', () => {
    const fc = new FlowControls();
    const f = fc.create();
    fc.addConsumer(f, a);
    fc.copyConsumer(a, b);
    expect(fc.isConsumer(b, f)).toBe(true);
    fc.removeConsumer(f, b);
    expect(fc.isConsumer(b, f)).toBe(false);
    expect(fc.isConsumer(a, f)).toBe(true);
  });
});
