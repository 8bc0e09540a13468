/**
 * What the per-source connection limit counts by: an IPv4 address (also when it arrives
 * IPv4-mapped, `::ffff:a.b.c.d`), or the /64 an IPv6 address is in, since one host commonly holds
 * a whole /64.
 */
export function sourceKey(ip: string): string {
  const zone = ip.indexOf('%');
  const a = (zone >= 0 ? ip.slice(0, zone) : ip).toLowerCase();
  if (!a.includes(':')) return a;
  if (a.startsWith('::ffff:') && a.includes('.')) return a.slice(7);
  const halves = a.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves[1] ? halves[1].split(':') : [];
  // A trailing dotted IPv4 part fills two groups.
  const width = head.length + tail.length + (a.includes('.') ? 1 : 0);
  const groups =
    halves.length > 1 ? [...head, ...Array<string>(Math.max(0, 8 - width)).fill('0'), ...tail] : head;
  const prefix = groups.slice(0, 4).map((g) => (Number.parseInt(g, 16) || 0).toString(16));
  return `${prefix.join(':')}::/64`;
}
