export * from './access.js';
export * from './channel-identity.js';
export * from './data-cipher.js';
export * from './messages.js';
export * from './ockam-identity.js';
export * from './ockam-xx.js';
export * from './secure-channel.js';
export * from './secure-channels.js';
