/**
 * Deliberate mistakes, made the way users make them, through the real CLI: each gets exactly one
 * line `keyhop: error [CODE]: …` with a stable code, the right exit status, and words that say
 * what to do next. Nothing here may crash, hang, print a stack trace or report success.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorLine, freePorts, keyhop } from '../support/cli.js';

let home: string;
let port: number;

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'kh-mistakes-'));
  [port] = (await freePorts(1)) as [number];
  const r = await keyhop(home, ['node', 'start', 'up', '--tcp-listener', `127.0.0.1:${port}`]);
  expect(r.code, r.stderr).toBe(0);
  writeFileSync(join(home, 'bad.json'), '{ "name": "x", "tcpListener": [] }');
  writeFileSync(join(home, 'broken.json'), '{ nope');
});

afterAll(async () => {
  await keyhop(home, ['node', 'stop', 'up']);
  rmSync(home, { recursive: true, force: true });
});

/** [what the user typed, code, words the line must hold (what to do next)]; exit 2 for USAGE, else 1 */
const mistakes: [string[], string, RegExp][] = [
  [['nod', 'start'], 'USAGE', /unknown command 'nod'.*keyhop --help/],
  [['node', 'strat'], 'USAGE', /Did you mean start\?.*keyhop node --help/],
  [
    ['node', 'start', '--tcp-listner', '127.0.0.1:0'],
    'USAGE',
    /unknown option '--tcp-listner'.*Did you mean --tcp-listener/,
  ],
  [['message', 'send', 'hi'], 'USAGE', /required option '--to <route>'.*keyhop message send --help/],
  [
    ['node', 'start', 'x', '--config', '/nonexistent.json'],
    'CONFIG_INVALID',
    /cannot read config \/nonexistent\.json/,
  ],
  [['node', 'start', 'x', '--config', '{bad}'], 'CONFIG_INVALID', /is not valid JSON/],
  [['node', 'start', 'x', '--log-level', 'loud'], 'CONFIG_INVALID', /log\.level must be one of fatal, error/],
  [['node', 'start', 'x', '--relay-alias', 'x'], 'USAGE', /--relay-alias names a relay made with --relay-at/],
  [
    ['node', 'start', 'x', '--tcp-listener', '127.0.0.1:99999'],
    'ADDRESS_INVALID',
    /port 99999 is out of range/,
  ],
  [
    ['node', 'start', 'x', '--mqtt-user', 'u'],
    'USAGE',
    /--mqtt-… options describe a mailbox: give its broker with --mqtt <url>/,
  ],
  [
    ['node', 'start', 'x', '--mqtt', 'http://broker:1883'],
    'CONFIG_INVALID',
    /"http:\/\/broker:1883" is not a broker URL \(mqtt:\/\/host:port or mqtts:\/\/host:port\)/,
  ],
  [['enroll'], 'USAGE', /give --ticket <ticket>.*or --manifest/],
  [
    ['enroll', '--ticket', 'hello'],
    'DECODE_INVALID',
    /not a keyhop ticket \(it starts with keyhop-ticket:\)/,
  ],
  [['enroll', '--manifest', '/nonexistent.json'], 'USAGE', /cannot read the manifest \/nonexistent\.json/],
  [['authority', 'show', 'ghost'], 'AUTHORITY_NOT_FOUND', /keyhop authority create ghost/],
  [
    ['authority', 'ticket', 'create', 'ghost', '--ttl', 'soon'],
    'USAGE',
    /--ttl takes seconds, or a number with s, m, h or d/,
  ],
  [['authority', 'revoke', 'ghost'], 'AUTHORITY_NOT_FOUND', /keyhop authority create ghost/],
  [['node', 'renew', 'up'], 'USAGE', /not enrolled with an authority \(keyhop enroll\)/],
  [
    ['node', 'start', 'x', '--relay-authority', 'I00'],
    'CONFIG_INVALID',
    /relayAccess is set but the node runs no relay service/,
  ],
  [['node', 'start', 'up'], 'NODE_EXISTS', /already running \(keyhop node stop up first\)/],
  [['node', 'stop', 'ghost'], 'NODE_NOT_RUNNING', /keyhop node list shows the nodes/],
  [['node', 'show', 'ghost'], 'NODE_NOT_FOUND', /keyhop node list shows the nodes/],
  [['node', 'delete', 'up'], 'NODE_EXISTS', /keyhop node stop up first/],
  [['message', 'send', 'hi', '--to', 'echo'], 'USAGE', /without --from .* start it with a transport address/],
  [['message', 'send', 'hi', '--to', '1#127.0.0.1:1 => echo'], 'CONNECT_FAILED', /nothing listens there/],
  [['message', 'send', 'hi', '--to', '1#a#b'], 'ADDRESS_INVALID', /./],
  [['message', 'send', 'hi', '--to', '1#127.0.0.1:4000 =>'], 'ROUTE_INVALID', /a separator too many/],
  [
    ['message', 'send', 'hi', '--to', 'echo', '--timeout', 'soon'],
    'USAGE',
    /--timeout must be a positive number of ms/,
  ],
  [
    ['message', 'send', 'hi', '--from', 'ghost', '--to', 'echo'],
    'NODE_NOT_RUNNING',
    /start it with: keyhop node start ghost/,
  ],
  [['tcp-listener', 'create', '127.0.0.1:0', '--at', 'ghost'], 'NODE_NOT_RUNNING', /keyhop node start ghost/],
  [
    ['secure-channel', 'create', '--from', 'up', '--to', '1#127.0.0.1:1 => api', '--timeout', '3000'],
    'CONNECT_FAILED',
    /nothing listens there/,
  ],
  [
    ['secure-channel', 'delete', '0#nope', '--at', 'up'],
    'ADDRESS_UNKNOWN',
    /no secure channel with encryptor 0#nope/,
  ],
  [['tcp-outlet', 'create', '--at', 'up', '--to', 'nohost'], 'ADDRESS_INVALID', /"nohost" is not host:port/],
  [
    [
      'tcp-inlet',
      'create',
      '--at',
      'up',
      '--from',
      '127.0.0.1:0',
      '--to',
      '1#127.0.0.1:1 => api',
      '--authorized',
      `I${'0'.repeat(64)}`,
    ],
    'CONNECT_FAILED',
    /nothing listens there/,
  ],
  [
    ['tcp-inlet', 'create', '--at', 'up', '--from', '127.0.0.1:0', '--to', '1#127.0.0.1:1 => api'],
    'CONFIG_INVALID',
    /names no identity for the outlet's node/,
  ],
  [['relay', 'create', '--at', '1#127.0.0.1:1', '--to', 'up'], 'CONNECT_FAILED', /nothing listens there/],
  [['identity', 'show', 'ghost'], 'IDENTITY_NOT_FOUND', /create it with: keyhop identity create ghost/],
  [['identity', 'create', 'bad/name'], 'USAGE', /letters, digits, '-' or '_'/],
  [['identity', 'create', 'x', '--key-type', 'rsa'], 'USAGE', /--key-type must be ed25519 or p256/],
  [
    ['identity', 'create', 'x', '--vault', 'ghost'],
    'VAULT_NOT_FOUND',
    /create it with: keyhop vault create ghost/,
  ],
  [['credential', 'show', '00'], 'DECODE_INVALID', /give the hex that keyhop credential issue printed/],
  [['credential', 'show', 'xyz'], 'USAGE', /must be hex/],
  [
    ['credential', 'issue', '--as', 'ghost', '--for', 'I1'],
    'IDENTITY_NOT_FOUND',
    /keyhop identity create ghost/,
  ],
  [['policy', 'check', '(= subject.role'], 'POLICY_INVALID', /unclosed '\('/],
  [
    ['vault', 'create', 'v', '--backend', 'floppy'],
    'USAGE',
    /--backend must be software, atecc608, tpm or pkcs11/,
  ],
  [['vault', 'create', 'v', '--backend', 'pkcs11'], 'USAGE', /needs --module <path> and --token <label>/],
  [['vault', 'encrypt', 'ghost'], 'USAGE', /set KEYHOP_VAULT_PASSPHRASE/],
  [['atecc608', 'info', '--i2c-bus', '9'], 'HARDWARE_UNAVAILABLE', /No I2C adapter \/dev\/i2c-9: enable I2C/],
  [['atecc608-emulator'], 'USAGE', /give --socket, --kit-serial or both/],
  [['pair', 'list', '--at', 'ghost'], 'NODE_NOT_RUNNING', /keyhop node start ghost/],
  [
    ['pair', '--at', 'up', '--scan-ms', '100'],
    'USAGE',
    /this node has no BLE \(add a "ble" section to its config\)/,
  ],
];

describe('mistakes get one clear line each', () => {
  it.each(mistakes)('keyhop %j', async (args, code, words) => {
    const status = code === 'USAGE' ? 2 : 1;
    const r = await keyhop(
      home,
      args.map((a) => a.replace('{bad}', join(home, 'broken.json'))),
    );
    expect(r.code, r.stderr).toBe(status);
    expect(r.stdout).toBe('');
    expect(r.stderr.endsWith('\n') && r.stderr.trimEnd().split('\n').length === 1, r.stderr).toBe(true);
    const line = errorLine(r);
    expect(line.code).toBe(code);
    expect(line.message).toMatch(words);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});
