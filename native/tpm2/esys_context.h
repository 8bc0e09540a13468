// esys_context.h: one ESAPI context (tpm2-tss) over one TCTI, free of Node-API.
//
// Every method talks to the TPM and must run on a worker thread with mutex() held: ESAPI contexts
// are not thread-safe. Methods return a Status carrying the raw TSS2_RC (0 = success) and the
// name of the ESAPI call that failed; the binding decodes it (Tss2_RC_Decode) for JS.
//
// Templates and constants are from TCG TPM 2.0 Library Part 2 (Structures) and the research notes
// (/work/shared/research/ecosystem.md §C), where these exact templates were run against swtpm.
#ifndef KEYHOP_NATIVE_TPM2_ESYS_CONTEXT_H_
#define KEYHOP_NATIVE_TPM2_ESYS_CONTEXT_H_

#include <tss2/tss2_esys.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace keyhop {
namespace tpm2 {

struct Status {
  TSS2_RC rc = 0;
  std::string where;  // the ESAPI/TCTI call that failed, e.g. "Esys_Sign"
  bool ok() const { return rc == 0; }
};

enum class KeyKind { Sign, Ecdh };

struct CreatedKey {
  std::vector<uint8_t> publicBlob;   // marshalled TPM2B_PUBLIC
  std::vector<uint8_t> privateBlob;  // marshalled TPM2B_PRIVATE (wrapped by the storage primary)
  std::vector<uint8_t> x, y;         // 32 bytes each, left-padded
};

struct PublicKey {
  std::vector<uint8_t> x, y;
  KeyKind kind = KeyKind::Sign;
  bool isEcc = false;
};

// Largest GetRandom answer we ask for (sizeof(TPMU_HA) is 64 with SHA-512 compiled in).
constexpr uint16_t kMaxRandom = 64;

class EsysContext {
 public:
  EsysContext() = default;
  ~EsysContext();
  EsysContext(const EsysContext&) = delete;
  EsysContext& operator=(const EsysContext&) = delete;

  // Loads the TCTI named by `tcti` (Tss2_TctiLdr_Initialize syntax, e.g. "device:/dev/tpmrm0",
  // "swtpm:host=127.0.0.1,port=2321"), initialises ESAPI, runs Startup(CLEAR) (TPM2_RC_INITIALIZE
  // = already started, fine), creates the storage primary and, when `paramEncryption`, a salted
  // HMAC session for parameter encryption. On failure everything is torn down again.
  Status Open(const std::string& tcti, bool paramEncryption);
  // Flushes the session and the primary, finalizes ESAPI and the TCTI. Idempotent.
  void Close();
  bool open() const { return esys_ != nullptr; }
  std::mutex& mutex() { return mutex_; }

  Status CreateKey(KeyKind kind, CreatedKey* out);
  Status Load(const std::vector<uint8_t>& publicBlob, const std::vector<uint8_t>& privateBlob, ESYS_TR* out);
  Status FromPersistent(uint32_t tpmHandle, ESYS_TR* out);
  Status ReadPublic(ESYS_TR handle, PublicKey* out);
  // EvictControl(owner, transient, persistent): the copy at `persistent`, as a new ESYS_TR.
  Status Persist(ESYS_TR transient, uint32_t persistent, ESYS_TR* out);
  // EvictControl(owner, persistent object): removes it from NV; `handle` is invalid afterwards.
  Status Evict(ESYS_TR handle);
  Status Sign(ESYS_TR key, const uint8_t* digest32, std::vector<uint8_t>* rs);
  Status EcdhZGen(ESYS_TR key, const uint8_t* x32, const uint8_t* y32, std::vector<uint8_t>* zx);
  Status GetRandom(uint16_t n, std::vector<uint8_t>* out);
  Status Flush(ESYS_TR handle);    // a transient object or session
  Status Release(ESYS_TR handle);  // forget an ESYS_TR (persistent objects) without touching the TPM
  Status PersistentHandles(uint32_t from, uint32_t count, std::vector<uint32_t>* out);

  bool sessionActive() const { return session_ != ESYS_TR_NONE; }
  // Session attributes read back (Esys_TRSess_GetAttributes) right after the last successful use
  // of the session by each command (keyed by command name).
  const std::map<std::string, uint32_t>& sessionUse() const { return sessionUse_; }

 private:
  Status CreatePrimary();
  Status StartSession();
  // The session to pass as shandle1 with `attrs` set, or `fallback` when there is no session.
  ESYS_TR UseSession(TPMA_SESSION attrs, ESYS_TR fallback);
  void NoteSessionUse(const char* command);

  std::mutex mutex_;
  TSS2_TCTI_CONTEXT* tcti_ = nullptr;
  ESYS_CONTEXT* esys_ = nullptr;
  ESYS_TR primary_ = ESYS_TR_NONE;
  ESYS_TR session_ = ESYS_TR_NONE;
  std::map<std::string, uint32_t> sessionUse_;
};

}  // namespace tpm2
}  // namespace keyhop

#endif  // KEYHOP_NATIVE_TPM2_ESYS_CONTEXT_H_
