import { describe, expect, it } from 'vitest';
import { ErrorCodes, KeyhopError } from '../errors.js';
import { Address } from './address.js';
import { type LocalInfo, Message } from './message.js';
import { Route } from './route.js';

const bytes = (s: string) => new TextEncoder().encode(s);
const texts = (r: Route) => r.addresses.map((a) => a.toString());

describe('Message.create', () => {
  it('defaults to an empty return route and no local info', () => {
    const payload = bytes('hi');
    const m = Message.create(Route.parse('echo'), payload);
    expect(texts(m.onward)).toEqual(['0#echo']);
    expect(m.returnRoute).toBe(Route.EMPTY);
    expect(m.payload).toBe(payload);
    expect(m.localInfo).toEqual([]);
  });

  it('takes an explicit return route', () => {
    const m = Message.create(Route.parse('echo'), bytes(''), Route.parse('app'));
    expect(texts(m.returnRoute)).toEqual(['0#app']);
  });
});

describe('Message.stepForward (the hop rule)', () => {
  it('pops the first onward address and pushes self on the return route', () => {
    const info: LocalInfo = { type: 'conn', data: 7 };
    const m = new Message(Route.parse('hop => echo'), Route.parse('app'), bytes('x'), [info]);
    const s = m.stepForward(Address.local('hop'));
    expect(texts(s.onward)).toEqual(['0#echo']);
    expect(texts(s.returnRoute)).toEqual(['0#hop', '0#app']);
    expect(s.payload).toBe(m.payload);
    expect(s.localInfo).toEqual([info]);
    // the original is untouched
    expect(texts(m.onward)).toEqual(['0#hop', '0#echo']);
    expect(texts(m.returnRoute)).toEqual(['0#app']);
  });

  it('over several hops builds the reply route in reverse order', () => {
    let m = Message.create(Route.parse('h1 => h2 => h3 => echo'), bytes('x'), Route.parse('app'));
    for (const h of ['h1', 'h2', 'h3']) {
      expect(m.onward.next!.text).toBe(h);
      m = m.stepForward(Address.local(h));
    }
    expect(texts(m.onward)).toEqual(['0#echo']);
    expect(texts(m.returnRoute)).toEqual(['0#h3', '0#h2', '0#h1', '0#app']);
    // the reply goes back along the return route
    const reply = Message.create(m.returnRoute, bytes('y'));
    expect(texts(reply.onward)).toEqual(['0#h3', '0#h2', '0#h1', '0#app']);
  });

  it('pushes the given address even when it is not the onward head (transport addresses)', () => {
    const m = Message.create(Route.parse('sender_1 => echo'), bytes(''));
    const s = m.stepForward(Address.parse('1#10.0.0.1:4000'));
    expect(texts(s.onward)).toEqual(['0#echo']);
    expect(texts(s.returnRoute)).toEqual(['1#10.0.0.1:4000']);
  });

  it('on an empty onward route still pushes self', () => {
    const s = Message.create(Route.EMPTY, bytes('')).stepForward(Address.local('me'));
    expect(s.onward.isEmpty).toBe(true);
    expect(texts(s.returnRoute)).toEqual(['0#me']);
  });

  it('fails with ROUTE_INVALID when the return route is already full', () => {
    const full = Route.from(Array.from({ length: 64 }, (_, i) => `r${i}`));
    const m = Message.create(Route.parse('me'), bytes(''), full);
    let err: unknown;
    try {
      m.stepForward(Address.local('me'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KeyhopError);
    expect((err as KeyhopError).code).toBe(ErrorCodes.ROUTE_INVALID);
  });
});

describe('local info', () => {
  const a: LocalInfo = { type: 'tcp', data: { peer: '1.2.3.4:5' } };
  const b: LocalInfo = { type: 'identity', data: 'I123' };

  it('withLocalInfo adds, and replaces an entry of the same type', () => {
    const m0 = Message.create(Route.parse('x'), bytes(''));
    const m1 = m0.withLocalInfo(a).withLocalInfo(b);
    expect(m1.localInfo).toEqual([a, b]);
    const a2: LocalInfo = { type: 'tcp', data: { peer: '9.9.9.9:9' } };
    const m2 = m1.withLocalInfo(a2);
    expect(m2.localInfo).toEqual([b, a2]);
    expect(m2.localInfo.filter((i) => i.type === 'tcp')).toHaveLength(1);
    expect(m2.info('tcp')).toEqual({ peer: '9.9.9.9:9' });
    expect(m2.info<string>('identity')).toBe('I123');
    expect(m2.info('nope')).toBeUndefined();
    // earlier messages are unchanged
    expect(m0.localInfo).toEqual([]);
    expect(m1.localInfo).toEqual([a, b]);
    expect(m1.info('tcp')).toEqual({ peer: '1.2.3.4:5' });
  });

  it('forWire drops local info and keeps routes and payload', () => {
    const m = new Message(Route.parse('x'), Route.parse('y'), bytes('p'), [a, b]);
    const w = m.forWire();
    expect(w).not.toBe(m);
    expect(w.localInfo).toEqual([]);
    expect(w.onward).toBe(m.onward);
    expect(w.returnRoute).toBe(m.returnRoute);
    expect(w.payload).toBe(m.payload);
    expect(m.localInfo).toEqual([a, b]);
  });

  it('forWire returns the message itself when there is no local info', () => {
    const m = Message.create(Route.parse('x'), bytes(''));
    expect(m.forWire()).toBe(m);
  });

  it('withOnward and withReturn keep payload and local info', () => {
    const m = new Message(Route.parse('x'), Route.parse('y'), bytes('p'), [a]);
    const o = m.withOnward(Route.parse('z'));
    expect(texts(o.onward)).toEqual(['0#z']);
    expect(texts(o.returnRoute)).toEqual(['0#y']);
    expect(o.localInfo).toEqual([a]);
    expect(o.payload).toBe(m.payload);
    const r = m.withReturn(Route.parse('w'));
    expect(texts(r.onward)).toEqual(['0#x']);
    expect(texts(r.returnRoute)).toEqual(['0#w']);
    expect(r.localInfo).toEqual([a]);
    expect(texts(m.onward)).toEqual(['0#x']);
    expect(texts(m.returnRoute)).toEqual(['0#y']);
  });
});
