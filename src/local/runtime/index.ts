// Public entry point of the local Substrate's gVisor runtime.
export type * from './types.js';
export {
  GvisorRuntime,
  createRuntime,
  removeInstanceLeftovers,
  runscList,
  runscPidsOf,
  runscVersionOf,
  readSnapshot,
  type Compression,
  type Platform,
  type RuntimeOptions,
} from './gvisor.js';
export { httpRequestVia, sandboxConnector, type HttpViaOptions, type HttpViaResponse } from './http.js';
export { HUB_IP, MAX_SLOT_INDEX, REQUIRED_RUNSC_VERSION, defaultRunscPath, instancePaths, instanceTagOf, projectRoot } from './paths.js';
export { listNetns } from './netns.js';
