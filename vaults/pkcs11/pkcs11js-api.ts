/**
 * The part of pkcs11js's API that keyhop calls, declared by keyhop. pkcs11js is an optional
 * dependency with a native addon: on a machine without a C++ toolchain npm leaves it out, and the
 * TypeScript build must not depend on its type declarations being installed. The shapes follow
 * pkcs11js 2.1.x (`index.d.ts`); `vaults/pkcs11/ckr.test.ts` and the SoftHSM2 tests check them
 * against the real addon wherever it is built.
 */
export type Handle = Buffer;

export interface Attribute {
  type: number;
  value?: number | boolean | string | Buffer | Date;
}

export type Template = Attribute[];

export interface AttributeResult {
  type: number;
  value: Buffer;
}

export interface Mechanism {
  mechanism: number;
  parameter?: Buffer | number | { type: number; [field: string]: unknown };
}

export interface TokenInfo {
  label: string;
  manufacturerID: string;
  model: string;
  serialNumber: string;
  flags: number;
}

export interface SessionInfo {
  slotID: Buffer;
  state: number;
  flags: number;
  deviceError: number;
}

export interface KeyPair {
  privateKey: Handle;
  publicKey: Handle;
}

export interface PKCS11 {
  load(path: string): void;
  close(): void;
  C_Initialize(options?: { libraryParameters?: string; flags?: number }): void;
  C_Finalize(): void;
  C_GetSlotList(tokenPresent?: boolean): Handle[];
  C_GetTokenInfo(slot: Handle): TokenInfo;
  C_GetMechanismList(slot: Handle): number[];
  C_OpenSession(slot: Handle, flags: number): Handle;
  C_CloseSession(session: Handle): void;
  C_GetSessionInfo(session: Handle): SessionInfo;
  C_Login(session: Handle, userType: number, pin?: string): void;
  C_Logout(session: Handle): void;
  C_DestroyObject(session: Handle, object: Handle): void;
  C_FindObjectsInit(session: Handle, template: Template): void;
  C_FindObjects(session: Handle, maxObjectCount: number): Handle[];
  C_FindObjectsFinal(session: Handle): void;
  C_GetAttributeValue(session: Handle, object: Handle, template: Template): AttributeResult[];
  C_GenerateKeyPair(
    session: Handle,
    mechanism: Mechanism,
    publicTmpl: Template,
    privateTmpl: Template,
  ): KeyPair;
  C_GenerateKeyPairAsync(
    session: Handle,
    mechanism: Mechanism,
    publicTmpl: Template,
    privateTmpl: Template,
  ): Promise<KeyPair>;
  C_SignInit(session: Handle, mechanism: Mechanism, key: Handle): void;
  C_SignAsync(session: Handle, inData: Buffer, outData: Buffer): Promise<Buffer>;
  C_DeriveKeyAsync(session: Handle, mechanism: Mechanism, key: Handle, template: Template): Promise<Handle>;
  C_GenerateRandom(session: Handle, buf: Buffer): Buffer;
}

/** What `require('pkcs11js')` gives: the class, the parameter-type constants and the error class. */
export interface Pkcs11Lib {
  PKCS11: new () => PKCS11;
  CK_PARAMS_EC_DH: number;
  Pkcs11Error: new (message: string, code?: number, method?: string) => Error;
}
