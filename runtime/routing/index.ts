export * from './access-control.js';
export * from './address.js';
export * from './context.js';
export * from './flow-control.js';
export * from './message.js';
export * from './route.js';
export * from './router.js';
export * from './worker.js';
