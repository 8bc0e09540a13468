/**
 * The PKCS#11 (2.40 / 3.0) numbers the vault uses, defined here rather than read from pkcs11js:
 * pkcs11js 2.1.7 lacks the Edwards-curve ones, and these modules stay importable (and testable)
 * without the native addon. constants.test.ts checks every value pkcs11js does define against it.
 */

// Object classes
export const CKO_PUBLIC_KEY = 0x2;
export const CKO_PRIVATE_KEY = 0x3;
export const CKO_SECRET_KEY = 0x4;

// Key types
export const CKK_EC = 0x3;
export const CKK_GENERIC_SECRET = 0x10;
/** PKCS#11 3.0; not exported by pkcs11js 2.1.7. */
export const CKK_EC_EDWARDS = 0x40;

// Attributes
export const CKA_CLASS = 0x0;
export const CKA_TOKEN = 0x1;
export const CKA_PRIVATE = 0x2;
export const CKA_LABEL = 0x3;
export const CKA_VALUE = 0x11;
export const CKA_KEY_TYPE = 0x100;
export const CKA_ID = 0x102;
export const CKA_SENSITIVE = 0x103;
export const CKA_SIGN = 0x108;
export const CKA_VERIFY = 0x10a;
export const CKA_DERIVE = 0x10c;
export const CKA_VALUE_LEN = 0x161;
export const CKA_EXTRACTABLE = 0x162;
export const CKA_EC_PARAMS = 0x180;
export const CKA_EC_POINT = 0x181;

// Mechanisms
export const CKM_EC_KEY_PAIR_GEN = 0x1040;
export const CKM_ECDSA = 0x1041;
export const CKM_ECDH1_DERIVE = 0x1050;
/** PKCS#11 3.0; not exported by pkcs11js 2.1.7. */
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
/** PKCS#11 3.0; not exported by pkcs11js 2.1.7. */
export const CKM_EDDSA = 0x1057;

/** ECDH key derivation function: none, the raw x-coordinate. */
export const CKD_NULL = 0x1;
export const CKU_USER = 0x1;

// Session flags and states
export const CKF_RW_SESSION = 0x2;
export const CKF_SERIAL_SESSION = 0x4;
export const CKS_RO_USER_FUNCTIONS = 1;
export const CKS_RW_USER_FUNCTIONS = 3;

/** C_Initialize: the library may use the OS's locking (pkcs11js's async calls run on worker threads). */
export const CKF_OS_LOCKING_OK = 0x2;

// Token flags (CK_TOKEN_INFO.flags)
export const CKF_LOGIN_REQUIRED = 0x4;
export const CKF_USER_PIN_INITIALIZED = 0x8;
export const CKF_PROTECTED_AUTHENTICATION_PATH = 0x100;
export const CKF_TOKEN_INITIALIZED = 0x400;
export const CKF_USER_PIN_COUNT_LOW = 0x10000;
export const CKF_USER_PIN_FINAL_TRY = 0x20000;
export const CKF_USER_PIN_LOCKED = 0x40000;
export const CKF_USER_PIN_TO_BE_CHANGED = 0x80000;
