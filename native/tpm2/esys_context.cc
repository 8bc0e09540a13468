// esys_context.cc: see esys_context.h. Structure layouts and constants: TCG TPM 2.0 Library
// Part 2 (Structures); call sequences: TCG TSS 2.0 Enhanced System API (ESAPI) specification.
#include "esys_context.h"

#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include <cstring>

namespace keyhop {
namespace tpm2 {
namespace {

Status Fail(TSS2_RC rc, const char* where) {
  Status s;
  s.rc = rc;
  s.where = where;
  return s;
}

// The TPM-layer response code without the format-one parameter/handle/session number
// (Part 2 §6.6: bits 6..11 of a format-one code say where the error is).
TSS2_RC TpmError(TSS2_RC rc) {
  if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER) return rc;
  return (rc & TPM2_RC_FMT1) != 0 ? (rc & 0xBF) : rc;
}

void LeftPad32(const uint8_t* data, size_t size, std::vector<uint8_t>* out) {
  out->assign(32, 0);
  if (size > 32) {  // never for P-256; keep the low-order bytes rather than overflow
    data += size - 32;
    size = 32;
  }
  std::memcpy(out->data() + (32 - size), data, size);
}

// Object attributes shared by all keyhop keys: non-duplicable, TPM-generated, usable with the
// (empty) auth value, and outside dictionary-attack accounting so a failed HMAC on our keys can
// never lock the TPM out for other users.
constexpr TPMA_OBJECT kBaseAttrs = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                   TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                                   TPMA_OBJECT_NODA;

TPM2B_PUBLIC EccTemplate(TPMA_OBJECT attrs) {
  TPM2B_PUBLIC t;
  std::memset(&t, 0, sizeof t);
  t.publicArea.type = TPM2_ALG_ECC;
  t.publicArea.nameAlg = TPM2_ALG_SHA256;
  t.publicArea.objectAttributes = attrs;
  t.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
  t.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
  t.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
  t.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  return t;
}

// Storage primary (the SRK shape of the TCG provisioning guidance): restricted decryption key,
// ECC P-256, AES-128-CFB for the children it wraps.
TPM2B_PUBLIC PrimaryTemplate() {
  TPM2B_PUBLIC t = EccTemplate(kBaseAttrs | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT);
  t.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
  t.publicArea.parameters.eccDetail.symmetric.keyBits.aes = 128;
  t.publicArea.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
  return t;
}

TPM2B_PUBLIC ChildTemplate(KeyKind kind) {
  if (kind == KeyKind::Sign) {
    TPM2B_PUBLIC t = EccTemplate(kBaseAttrs | TPMA_OBJECT_SIGN_ENCRYPT);
    t.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
    t.publicArea.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    return t;
  }
  TPM2B_PUBLIC t = EccTemplate(kBaseAttrs | TPMA_OBJECT_DECRYPT);
  t.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDH;
  t.publicArea.parameters.eccDetail.scheme.details.ecdh.hashAlg = TPM2_ALG_SHA256;
  return t;
}

}  // namespace

EsysContext::~EsysContext() { Close(); }

Status EsysContext::Open(const std::string& tcti, bool paramEncryption) {
  Close();
  TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti.c_str(), &tcti_);
  if (rc != TSS2_RC_SUCCESS) {
    tcti_ = nullptr;
    return Fail(rc, "Tss2_TctiLdr_Initialize");
  }
  rc = Esys_Initialize(&esys_, tcti_, nullptr);
  if (rc != TSS2_RC_SUCCESS) {
    esys_ = nullptr;
    Close();
    return Fail(rc, "Esys_Initialize");
  }
  rc = Esys_Startup(esys_, TPM2_SU_CLEAR);
  if (rc != TSS2_RC_SUCCESS && TpmError(rc) != TPM2_RC_INITIALIZE) {
    Close();
    return Fail(rc, "Esys_Startup");
  }
  Status s = CreatePrimary();
  if (s.ok() && paramEncryption) s = StartSession();
  if (!s.ok()) Close();
  return s;
}

void EsysContext::Close() {
  if (esys_ != nullptr) {
    if (session_ != ESYS_TR_NONE) Esys_FlushContext(esys_, session_);
    if (primary_ != ESYS_TR_NONE) Esys_FlushContext(esys_, primary_);
    Esys_Finalize(&esys_);
  }
  esys_ = nullptr;
  session_ = ESYS_TR_NONE;
  primary_ = ESYS_TR_NONE;
  sessionUse_.clear();
  if (tcti_ != nullptr) Tss2_TctiLdr_Finalize(&tcti_);
  tcti_ = nullptr;
}

Status EsysContext::CreatePrimary() {
  TPM2B_SENSITIVE_CREATE sensitive;
  std::memset(&sensitive, 0, sizeof sensitive);
  TPM2B_PUBLIC tmpl = PrimaryTemplate();
  TPM2B_DATA outside;
  std::memset(&outside, 0, sizeof outside);
  TPML_PCR_SELECTION pcrs;
  std::memset(&pcrs, 0, sizeof pcrs);
  TPM2B_PUBLIC* outPublic = nullptr;
  TPM2B_CREATION_DATA* creationData = nullptr;
  TPM2B_DIGEST* creationHash = nullptr;
  TPMT_TK_CREATION* ticket = nullptr;
  TSS2_RC rc = Esys_CreatePrimary(esys_, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                  &sensitive, &tmpl, &outside, &pcrs, &primary_, &outPublic, &creationData,
                                  &creationHash, &ticket);
  Esys_Free(outPublic);
  Esys_Free(creationData);
  Esys_Free(creationHash);
  Esys_Free(ticket);
  if (rc != TSS2_RC_SUCCESS) {
    primary_ = ESYS_TR_NONE;
    return Fail(rc, "Esys_CreatePrimary");
  }
  return Status();
}

// A salted, unbound HMAC session: the salt is sent encrypted to the storage primary (ECDH), so the
// session key, and with it every parameter encrypted under it, is unknown to a bus observer.
Status EsysContext::StartSession() {
  TPMT_SYM_DEF sym;
  std::memset(&sym, 0, sizeof sym);
  sym.algorithm = TPM2_ALG_AES;
  sym.keyBits.aes = 128;
  sym.mode.aes = TPM2_ALG_CFB;
  TSS2_RC rc = Esys_StartAuthSession(esys_, primary_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                     nullptr, TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256, &session_);
  if (rc != TSS2_RC_SUCCESS) {
    session_ = ESYS_TR_NONE;
    return Fail(rc, "Esys_StartAuthSession");
  }
  return Status();
}

ESYS_TR EsysContext::UseSession(TPMA_SESSION attrs, ESYS_TR fallback) {
  if (session_ == ESYS_TR_NONE) return fallback;
  TSS2_RC rc = Esys_TRSess_SetAttributes(esys_, session_, attrs | TPMA_SESSION_CONTINUESESSION, 0xFF);
  return rc == TSS2_RC_SUCCESS ? session_ : fallback;
}

void EsysContext::NoteSessionUse(const char* command) {
  if (session_ == ESYS_TR_NONE) return;
  TPMA_SESSION attrs = 0;
  if (Esys_TRSess_GetAttributes(esys_, session_, &attrs) == TSS2_RC_SUCCESS) sessionUse_[command] = attrs;
}

Status EsysContext::CreateKey(KeyKind kind, CreatedKey* out) {
  TPM2B_SENSITIVE_CREATE sensitive;
  std::memset(&sensitive, 0, sizeof sensitive);
  TPM2B_PUBLIC tmpl = ChildTemplate(kind);
  TPM2B_DATA outside;
  std::memset(&outside, 0, sizeof outside);
  TPML_PCR_SELECTION pcrs;
  std::memset(&pcrs, 0, sizeof pcrs);
  TPM2B_PRIVATE* outPrivate = nullptr;
  TPM2B_PUBLIC* outPublic = nullptr;
  TPM2B_CREATION_DATA* creationData = nullptr;
  TPM2B_DIGEST* creationHash = nullptr;
  TPMT_TK_CREATION* ticket = nullptr;
  // inSensitive (command) and outPrivate (response) are both first parameters and TPM2Bs.
  ESYS_TR s1 = UseSession(TPMA_SESSION_DECRYPT | TPMA_SESSION_ENCRYPT, ESYS_TR_PASSWORD);
  TSS2_RC rc = Esys_Create(esys_, primary_, s1, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive, &tmpl, &outside, &pcrs,
                           &outPrivate, &outPublic, &creationData, &creationHash, &ticket);
  Status s;
  if (rc != TSS2_RC_SUCCESS) {
    s = Fail(rc, "Esys_Create");
  } else {
    NoteSessionUse("Create");
    uint8_t buf[sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE)];
    size_t off = 0;
    rc = Tss2_MU_TPM2B_PUBLIC_Marshal(outPublic, buf, sizeof buf, &off);
    if (rc == TSS2_RC_SUCCESS) {
      out->publicBlob.assign(buf, buf + off);
      off = 0;
      rc = Tss2_MU_TPM2B_PRIVATE_Marshal(outPrivate, buf, sizeof buf, &off);
    }
    if (rc != TSS2_RC_SUCCESS) {
      s = Fail(rc, "Tss2_MU_Marshal");
    } else {
      out->privateBlob.assign(buf, buf + off);
      const TPMS_ECC_POINT& p = outPublic->publicArea.unique.ecc;
      LeftPad32(p.x.buffer, p.x.size, &out->x);
      LeftPad32(p.y.buffer, p.y.size, &out->y);
    }
  }
  Esys_Free(outPrivate);
  Esys_Free(outPublic);
  Esys_Free(creationData);
  Esys_Free(creationHash);
  Esys_Free(ticket);
  return s;
}

Status EsysContext::Load(const std::vector<uint8_t>& publicBlob, const std::vector<uint8_t>& privateBlob,
                         ESYS_TR* out) {
  TPM2B_PUBLIC pub;
  TPM2B_PRIVATE priv;
  std::memset(&pub, 0, sizeof pub);
  std::memset(&priv, 0, sizeof priv);
  size_t off = 0;
  TSS2_RC rc = Tss2_MU_TPM2B_PUBLIC_Unmarshal(publicBlob.data(), publicBlob.size(), &off, &pub);
  if (rc != TSS2_RC_SUCCESS || off != publicBlob.size()) {
    return Fail(rc != TSS2_RC_SUCCESS ? rc : TSS2_MU_RC_BAD_SIZE, "Tss2_MU_TPM2B_PUBLIC_Unmarshal");
  }
  off = 0;
  rc = Tss2_MU_TPM2B_PRIVATE_Unmarshal(privateBlob.data(), privateBlob.size(), &off, &priv);
  if (rc != TSS2_RC_SUCCESS || off != privateBlob.size()) {
    return Fail(rc != TSS2_RC_SUCCESS ? rc : TSS2_MU_RC_BAD_SIZE, "Tss2_MU_TPM2B_PRIVATE_Unmarshal");
  }
  // inPrivate is the first command parameter; the response's first parameter is the name.
  ESYS_TR s1 = UseSession(TPMA_SESSION_DECRYPT | TPMA_SESSION_ENCRYPT, ESYS_TR_PASSWORD);
  rc = Esys_Load(esys_, primary_, s1, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub, out);
  if (rc != TSS2_RC_SUCCESS) return Fail(rc, "Esys_Load");
  NoteSessionUse("Load");
  return Status();
}

Status EsysContext::FromPersistent(uint32_t tpmHandle, ESYS_TR* out) {
  TSS2_RC rc = Esys_TR_FromTPMPublic(esys_, tpmHandle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, out);
  if (rc != TSS2_RC_SUCCESS) return Fail(rc, "Esys_TR_FromTPMPublic");
  return Status();
}

Status EsysContext::ReadPublic(ESYS_TR handle, PublicKey* out) {
  TPM2B_PUBLIC* pub = nullptr;
  TPM2B_NAME* name = nullptr;
  TPM2B_NAME* qualified = nullptr;
  TSS2_RC rc = Esys_ReadPublic(esys_, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name, &qualified);
  if (rc != TSS2_RC_SUCCESS) return Fail(rc, "Esys_ReadPublic");
  out->isEcc = pub->publicArea.type == TPM2_ALG_ECC;
  if (out->isEcc) {
    const TPMS_ECC_POINT& p = pub->publicArea.unique.ecc;
    LeftPad32(p.x.buffer, p.x.size, &out->x);
    LeftPad32(p.y.buffer, p.y.size, &out->y);
  }
  out->kind = (pub->publicArea.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT) != 0 ? KeyKind::Sign : KeyKind::Ecdh;
  Esys_Free(pub);
  Esys_Free(name);
  Esys_Free(qualified);
  return Status();
}

Status EsysContext::Persist(ESYS_TR transient, uint32_t persistent, ESYS_TR* out) {
  TSS2_RC rc = Esys_EvictControl(esys_, ESYS_TR_RH_OWNER, transient, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                 persistent, out);
  if (rc != TSS2_RC_SUCCESS) return Fail(rc, "Esys_EvictControl");
  return Status();
}

Status EsysContext::Evict(ESYS_TR handle) {
  TPMI_DH_PERSISTENT tpmHandle = 0;
  TSS2_RC rc = Esys_TR_GetTpmHandle(esys_, handle, &tpmHandle);
  if (rc != TSS2_RC_SUCCESS) return Fail(rc, "Esys_TR_GetTpmHandle");
  ESYS_TR gone = ESYS_TR_NONE;
  rc = Esys_EvictControl(esys_, ESYS_TR_RH_OWNER, handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, tpmHandle,
                         &gone);
  if (rc != TSS2_RC_SUCCESS) return Fail(rc, "Esys_EvictControl");
  return Status();
}

Status EsysContext::Sign(ESYS_TR key, const uint8_t* digest32, std::vector<uint8_t>* rs) {
  TPM2B_DIGEST digest;
  std::memset(&digest, 0, sizeof digest);
  digest.size = 32;
  std::memcpy(digest.buffer, digest32, 32);
  TPMT_SIG_SCHEME scheme;
  std::memset(&scheme, 0, sizeof scheme);
  scheme.scheme = TPM2_ALG_ECDSA;
  scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  // A NULL hash-check ticket: allowed for an unrestricted signing key (Part 3, TPM2_Sign).
  TPMT_TK_HASHCHECK validation;
  std::memset(&validation, 0, sizeof validation);
  validation.tag = TPM2_ST_HASHCHECK;
  validation.hierarchy = TPM2_RH_NULL;
  TPMT_SIGNATURE* sig = nullptr;
  // The digest (first command parameter) is a TPM2B; the signature (response) is not, so ENCRYPT
  // would be refused.
  ESYS_TR s1 = UseSession(TPMA_SESSION_DECRYPT, ESYS_TR_PASSWORD);
  TSS2_RC rc = Esys_Sign(esys_, key, s1, ESYS_TR_NONE, ESYS_TR_NONE, &digest, &scheme, &validation, &sig);
  if (rc != TSS2_RC_SUCCESS) return Fail(rc, "Esys_Sign");
  NoteSessionUse("Sign");
  std::vector<uint8_t> r, s;
  LeftPad32(sig->signature.ecdsa.signatureR.buffer, sig->signature.ecdsa.signatureR.size, &r);
  LeftPad32(sig->signature.ecdsa.signatureS.buffer, sig->signature.ecdsa.signatureS.size, &s);
  Esys_Free(sig);
  rs->assign(r.begin(), r.end());
  rs->insert(rs->end(), s.begin(), s.end());
  return Status();
}

Status EsysContext::EcdhZGen(ESYS_TR key, const uint8_t* x32, const uint8_t* y32, std::vector<uint8_t>* zx) {
  TPM2B_ECC_POINT in;
  std::memset(&in, 0, sizeof in);
  in.point.x.size = 32;
  std::memcpy(in.point.x.buffer, x32, 32);
  in.point.y.size = 32;
  std::memcpy(in.point.y.buffer, y32, 32);
  TPM2B_ECC_POINT* out = nullptr;
  ESYS_TR s1 = UseSession(TPMA_SESSION_DECRYPT | TPMA_SESSION_ENCRYPT, ESYS_TR_PASSWORD);
  TSS2_RC rc = Esys_ECDH_ZGen(esys_, key, s1, ESYS_TR_NONE, ESYS_TR_NONE, &in, &out);
  if (rc != TSS2_RC_SUCCESS) return Fail(rc, "Esys_ECDH_ZGen");
  NoteSessionUse("ECDH_ZGen");
  LeftPad32(out->point.x.buffer, out->point.x.size, zx);
  Esys_Free(out);
  return Status();
}

Status EsysContext::GetRandom(uint16_t n, std::vector<uint8_t>* out) {
  TPM2B_DIGEST* rnd = nullptr;
  // No handles need authorisation; the session rides along only to encrypt the response.
  ESYS_TR s1 = UseSession(TPMA_SESSION_ENCRYPT, ESYS_TR_NONE);
  TSS2_RC rc = Esys_GetRandom(esys_, s1, ESYS_TR_NONE, ESYS_TR_NONE, n, &rnd);
  if (rc != TSS2_RC_SUCCESS) return Fail(rc, "Esys_GetRandom");
  if (s1 != ESYS_TR_NONE) NoteSessionUse("GetRandom");
  out->assign(rnd->buffer, rnd->buffer + rnd->size);
  Esys_Free(rnd);
  return Status();
}

Status EsysContext::Flush(ESYS_TR handle) {
  TSS2_RC rc = Esys_FlushContext(esys_, handle);
  if (rc != TSS2_RC_SUCCESS) return Fail(rc, "Esys_FlushContext");
  return Status();
}

Status EsysContext::Release(ESYS_TR handle) {
  TSS2_RC rc = Esys_TR_Close(esys_, &handle);
  if (rc != TSS2_RC_SUCCESS) return Fail(rc, "Esys_TR_Close");
  return Status();
}

Status EsysContext::PersistentHandles(uint32_t from, uint32_t count, std::vector<uint32_t>* out) {
  out->clear();
  TPMI_YES_NO more = TPM2_YES;
  uint32_t next = from;
  const uint64_t end = static_cast<uint64_t>(from) + count;
  while (more == TPM2_YES && next < end) {
    TPMS_CAPABILITY_DATA* data = nullptr;
    TSS2_RC rc = Esys_GetCapability(esys_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, next,
                                    TPM2_MAX_CAP_HANDLES, &more, &data);
    if (rc != TSS2_RC_SUCCESS) return Fail(rc, "Esys_GetCapability");
    const uint32_t n = data->data.handles.count;
    uint32_t last = next;
    for (uint32_t i = 0; i < n && i < TPM2_MAX_CAP_HANDLES; i++) {
      last = data->data.handles.handle[i];
      if (last >= from && last < end) out->push_back(last);
    }
    Esys_Free(data);
    if (n == 0 || last < next) break;
    next = last + 1;
  }
  return Status();
}

}  // namespace tpm2
}  // namespace keyhop
