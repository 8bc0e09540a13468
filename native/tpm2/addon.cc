// addon.cc: Node-API binding of tpm2-tss ESAPI (keyhop_tpm2.node). JS API in native/README.md:
//
//   open(tcti, { paramEncryption? }) -> Promise<Context>
//   Context: createKey, load, fromPersistent, readPublic, evictControl, evict, sign, ecdhZGen,
//            getRandom, flush, release, persistentHandles, sessionInfo, close (all -> Promise)
//
// Arguments are validated on the JS thread before anything is queued (a bad one rejects with code
// EINVAL). Every TPM call runs in a Napi::AsyncWorker on a libuv worker thread with the context's
// mutex held (ESAPI contexts are not thread-safe; the JS side also queues, so at most one worker per
// context waits). TPM/TSS failures reject with { code: 'TPM2', rc, where, message: Tss2_RC_Decode }.
// Built without C++ exceptions (NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS).
#include <napi.h>
#include <tss2/tss2_rc.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "esys_context.h"

namespace keyhop {
namespace tpm2 {
namespace {

using Bytes = std::vector<uint8_t>;

struct Result {
  Bytes a, b, c, d;
  uint32_t n = 0;
  std::vector<uint32_t> list;
  std::map<std::string, uint32_t> attrs;
  bool flag = false;
};

using Run = std::function<Status(EsysContext&, Result&)>;
using Build = std::function<Napi::Value(Napi::Env, const Result&)>;

std::string Hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

Napi::Value ErrorValue(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Value().Set("code", Napi::String::New(env, code));
  return err.Value();
}

Napi::Value TpmErrorValue(Napi::Env env, const Status& s) {
  const char* decoded = Tss2_RC_Decode(s.rc);
  std::string text = decoded != nullptr ? decoded : "unknown";
  Napi::Error err = Napi::Error::New(env, s.where + " failed: " + text + " (" + Hex32(s.rc) + ")");
  Napi::Object o = err.Value();
  o.Set("code", Napi::String::New(env, "TPM2"));
  o.Set("rc", Napi::Number::New(env, s.rc));
  o.Set("where", Napi::String::New(env, s.where));
  o.Set("decoded", Napi::String::New(env, text));
  return o;
}

Napi::Value Rejected(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
  d.Reject(ErrorValue(env, code, message));
  return d.Promise();
}

Napi::Buffer<uint8_t> Buf(Napi::Env env, const Bytes& b) { return Napi::Buffer<uint8_t>::Copy(env, b.data(), b.size()); }

// One TPM operation on one context. The shared_ptr keeps the ESAPI context alive until the worker
// is done even when the JS object is collected meanwhile; the last owner closes it (on the JS
// thread, since AsyncWorkers are destroyed there).
class OpWorker : public Napi::AsyncWorker {
 public:
  OpWorker(Napi::Env env, std::shared_ptr<EsysContext> ctx, const char* name, Run run, Build build)
      : Napi::AsyncWorker(env, name),
        deferred_(Napi::Promise::Deferred::New(env)),
        ctx_(std::move(ctx)),
        run_(std::move(run)),
        build_(std::move(build)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    std::lock_guard<std::mutex> lock(ctx_->mutex());
    if (!ctx_->open()) {
      closed_ = true;
      return;
    }
    status_ = run_(*ctx_, result_);
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (closed_) {
      deferred_.Reject(ErrorValue(env, "CLOSED", "the TPM context is closed"));
    } else if (!status_.ok()) {
      deferred_.Reject(TpmErrorValue(env, status_));
    } else {
      deferred_.Resolve(build_ ? build_(env, result_) : env.Undefined());
    }
  }

  // Execute() never calls SetError; failures travel in status_ and are rejected in OnOK().
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<EsysContext> ctx_;
  Run run_;
  Build build_;
  Status status_;
  Result result_;
  bool closed_ = false;
};

Napi::Value Queue(Napi::Env env, std::shared_ptr<EsysContext> ctx, const char* name, Run run, Build build) {
  OpWorker* w = new OpWorker(env, std::move(ctx), name, std::move(run), std::move(build));
  Napi::Promise p = w->Promise();
  w->Queue();  // deletes itself after OnOK/OnError
  return p;
}

// ---- argument checks (JS thread) ----

bool GetUint(const Napi::CallbackInfo& info, size_t i, double min, double max, const char* what, uint32_t* out,
             std::string* why) {
  Napi::Value v = info.Length() > i ? info[i] : info.Env().Undefined();
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!std::isfinite(d) || std::floor(d) != d || d < min || d > max) {
    *why = std::string(what) + " must be an integer in " + Hex32(static_cast<uint32_t>(min)) + ".." +
           Hex32(static_cast<uint32_t>(max));
    return false;
  }
  *out = static_cast<uint32_t>(d);
  return true;
}

bool GetBytes(const Napi::CallbackInfo& info, size_t i, size_t min, size_t max, const char* what, Bytes* out,
              std::string* why) {
  Napi::Value v = info.Length() > i ? info[i] : info.Env().Undefined();
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    *why = std::string(what) + " must be a Buffer or Uint8Array";
    return false;
  }
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  if (a.ByteLength() < min || a.ByteLength() > max) {
    *why = std::string(what) + " must be " + std::to_string(min) + ".." + std::to_string(max) + " bytes, got " +
           std::to_string(a.ByteLength());
    return false;
  }
  out->assign(a.Data(), a.Data() + a.ByteLength());  // copied: JS may reuse the buffer
  return true;
}

// ESYS_TR values are small ESAPI-side numbers (not TPM handles); any uint32 is accepted here and
// ESAPI answers TSS2_ESYS_RC_BAD_TR for an unknown one.
constexpr double kU32 = 4294967295.0;

class Context : public Napi::ObjectWrap<Context> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Tpm2Context",
                       {
                           InstanceMethod<&Context::CreateKey>("createKey"),
                           InstanceMethod<&Context::Load>("load"),
                           InstanceMethod<&Context::FromPersistent>("fromPersistent"),
                           InstanceMethod<&Context::ReadPublic>("readPublic"),
                           InstanceMethod<&Context::EvictControl>("evictControl"),
                           InstanceMethod<&Context::Evict>("evict"),
                           InstanceMethod<&Context::Sign>("sign"),
                           InstanceMethod<&Context::EcdhZGen>("ecdhZGen"),
                           InstanceMethod<&Context::GetRandom>("getRandom"),
                           InstanceMethod<&Context::Flush>("flush"),
                           InstanceMethod<&Context::Release>("release"),
                           InstanceMethod<&Context::PersistentHandles>("persistentHandles"),
                           InstanceMethod<&Context::SessionInfo>("sessionInfo"),
                           InstanceMethod<&Context::Close>("close"),
                       });
  }

  explicit Context(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Context>(info) {}

  void Attach(std::shared_ptr<EsysContext> ctx) { ctx_ = std::move(ctx); }

 private:
  Napi::Value NotOpen(Napi::Env env) { return Rejected(env, "CLOSED", "the TPM context is closed"); }

  Napi::Value CreateKey(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string kind = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    if (kind != "sign" && kind != "ecdh") return Rejected(env, "EINVAL", "kind must be 'sign' or 'ecdh'");
    if (!ctx_) return NotOpen(env);
    KeyKind k = kind == "sign" ? KeyKind::Sign : KeyKind::Ecdh;
    return Queue(
        env, ctx_, "keyhop:tpm2:createKey",
        [k](EsysContext& c, Result& r) {
          CreatedKey key;
          Status s = c.CreateKey(k, &key);
          r.a = std::move(key.publicBlob);
          r.b = std::move(key.privateBlob);
          r.c = std::move(key.x);
          r.d = std::move(key.y);
          return s;
        },
        [](Napi::Env e, const Result& r) {
          Napi::Object o = Napi::Object::New(e);
          o.Set("publicBlob", Buf(e, r.a));
          o.Set("privateBlob", Buf(e, r.b));
          o.Set("x", Buf(e, r.c));
          o.Set("y", Buf(e, r.d));
          return Napi::Value(o);
        });
  }

  Napi::Value Load(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Bytes pub, priv;
    std::string why;
    if (!GetBytes(info, 0, 2, sizeof(TPM2B_PUBLIC), "publicBlob", &pub, &why) ||
        !GetBytes(info, 1, 2, sizeof(TPM2B_PRIVATE), "privateBlob", &priv, &why)) {
      return Rejected(env, "EINVAL", why);
    }
    if (!ctx_) return NotOpen(env);
    return Queue(
        env, ctx_, "keyhop:tpm2:load",
        [pub = std::move(pub), priv = std::move(priv)](EsysContext& c, Result& r) {
          ESYS_TR h = ESYS_TR_NONE;
          Status s = c.Load(pub, priv, &h);
          r.n = h;
          return s;
        },
        HandleResult);
  }

  Napi::Value FromPersistent(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t tpmHandle = 0;
    std::string why;
    if (!GetUint(info, 0, 0x81000000, 0x81FFFFFF, "persistent handle", &tpmHandle, &why)) {
      return Rejected(env, "EINVAL", why);
    }
    if (!ctx_) return NotOpen(env);
    return Queue(
        env, ctx_, "keyhop:tpm2:fromPersistent",
        [tpmHandle](EsysContext& c, Result& r) {
          ESYS_TR h = ESYS_TR_NONE;
          Status s = c.FromPersistent(tpmHandle, &h);
          r.n = h;
          return s;
        },
        HandleResult);
  }

  Napi::Value ReadPublic(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t h = 0;
    std::string why;
    if (!GetUint(info, 0, 0, kU32, "handle", &h, &why)) return Rejected(env, "EINVAL", why);
    if (!ctx_) return NotOpen(env);
    return Queue(
        env, ctx_, "keyhop:tpm2:readPublic",
        [h](EsysContext& c, Result& r) {
          PublicKey k;
          Status s = c.ReadPublic(h, &k);
          r.a = std::move(k.x);
          r.b = std::move(k.y);
          r.flag = k.isEcc;
          r.n = k.kind == KeyKind::Sign ? 1 : 0;
          return s;
        },
        [](Napi::Env e, const Result& r) {
          Napi::Object o = Napi::Object::New(e);
          o.Set("ecc", Napi::Boolean::New(e, r.flag));
          o.Set("kind", Napi::String::New(e, r.n == 1 ? "sign" : "ecdh"));
          o.Set("x", Buf(e, r.a));
          o.Set("y", Buf(e, r.b));
          return Napi::Value(o);
        });
  }

  Napi::Value EvictControl(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t h = 0, persistent = 0;
    std::string why;
    if (!GetUint(info, 0, 0, kU32, "handle", &h, &why) ||
        !GetUint(info, 1, 0x81000000, 0x81FFFFFF, "persistent handle", &persistent, &why)) {
      return Rejected(env, "EINVAL", why);
    }
    if (!ctx_) return NotOpen(env);
    return Queue(
        env, ctx_, "keyhop:tpm2:evictControl",
        [h, persistent](EsysContext& c, Result& r) {
          ESYS_TR out = ESYS_TR_NONE;
          Status s = c.Persist(h, persistent, &out);
          r.n = out;
          return s;
        },
        HandleResult);
  }

  Napi::Value Evict(const Napi::CallbackInfo& info) { return Simple(info, "keyhop:tpm2:evict", &EsysContext::Evict); }
  Napi::Value Flush(const Napi::CallbackInfo& info) { return Simple(info, "keyhop:tpm2:flush", &EsysContext::Flush); }
  Napi::Value Release(const Napi::CallbackInfo& info) {
    return Simple(info, "keyhop:tpm2:release", &EsysContext::Release);
  }

  Napi::Value Sign(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t h = 0;
    Bytes digest;
    std::string why;
    if (!GetUint(info, 0, 0, kU32, "handle", &h, &why) || !GetBytes(info, 1, 32, 32, "digest", &digest, &why)) {
      return Rejected(env, "EINVAL", why);
    }
    if (!ctx_) return NotOpen(env);
    return Queue(
        env, ctx_, "keyhop:tpm2:sign",
        [h, digest = std::move(digest)](EsysContext& c, Result& r) { return c.Sign(h, digest.data(), &r.a); },
        BytesResult);
  }

  Napi::Value EcdhZGen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t h = 0;
    Bytes x, y;
    std::string why;
    if (!GetUint(info, 0, 0, kU32, "handle", &h, &why) || !GetBytes(info, 1, 32, 32, "x", &x, &why) ||
        !GetBytes(info, 2, 32, 32, "y", &y, &why)) {
      return Rejected(env, "EINVAL", why);
    }
    if (!ctx_) return NotOpen(env);
    return Queue(
        env, ctx_, "keyhop:tpm2:ecdhZGen",
        [h, x = std::move(x), y = std::move(y)](EsysContext& c, Result& r) {
          return c.EcdhZGen(h, x.data(), y.data(), &r.a);
        },
        BytesResult);
  }

  Napi::Value GetRandom(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t n = 0;
    std::string why;
    if (!GetUint(info, 0, 1, kMaxRandom, "length", &n, &why)) return Rejected(env, "EINVAL", why);
    if (!ctx_) return NotOpen(env);
    return Queue(
        env, ctx_, "keyhop:tpm2:getRandom",
        [n](EsysContext& c, Result& r) { return c.GetRandom(static_cast<uint16_t>(n), &r.a); }, BytesResult);
  }

  Napi::Value PersistentHandles(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t from = 0, count = 0;
    std::string why;
    if (!GetUint(info, 0, 0x81000000, 0x81FFFFFF, "from", &from, &why) ||
        !GetUint(info, 1, 1, 0x01000000, "count", &count, &why)) {
      return Rejected(env, "EINVAL", why);
    }
    if (!ctx_) return NotOpen(env);
    return Queue(
        env, ctx_, "keyhop:tpm2:persistentHandles",
        [from, count](EsysContext& c, Result& r) { return c.PersistentHandles(from, count, &r.list); },
        [](Napi::Env e, const Result& r) {
          Napi::Array a = Napi::Array::New(e, r.list.size());
          for (size_t i = 0; i < r.list.size(); i++) a.Set(static_cast<uint32_t>(i), Napi::Number::New(e, r.list[i]));
          return Napi::Value(a);
        });
  }

  Napi::Value SessionInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ctx_) return NotOpen(env);
    return Queue(
        env, ctx_, "keyhop:tpm2:sessionInfo",
        [](EsysContext& c, Result& r) {
          r.flag = c.sessionActive();
          r.attrs = c.sessionUse();
          return Status();
        },
        [](Napi::Env e, const Result& r) {
          Napi::Object o = Napi::Object::New(e);
          o.Set("active", Napi::Boolean::New(e, r.flag));
          o.Set("type", r.flag ? Napi::Value(Napi::String::New(e, "hmac-salted")) : e.Null());
          o.Set("symmetric", r.flag ? Napi::Value(Napi::String::New(e, "AES-128-CFB")) : e.Null());
          Napi::Object cmds = Napi::Object::New(e);
          for (const auto& kv : r.attrs) cmds.Set(kv.first, Napi::Number::New(e, kv.second));
          o.Set("commands", cmds);
          return Napi::Value(o);
        });
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ctx_) {
      Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
      d.Resolve(env.Undefined());
      return d.Promise();
    }
    std::shared_ptr<EsysContext> ctx = std::move(ctx_);
    ctx_.reset();  // later calls reject with CLOSED at once
    return Queue(
        env, ctx, "keyhop:tpm2:close",
        [](EsysContext& c, Result&) {
          c.Close();
          return Status();
        },
        nullptr);
  }

  Napi::Value Simple(const Napi::CallbackInfo& info, const char* name, Status (EsysContext::*op)(ESYS_TR)) {
    Napi::Env env = info.Env();
    uint32_t h = 0;
    std::string why;
    if (!GetUint(info, 0, 0, kU32, "handle", &h, &why)) return Rejected(env, "EINVAL", why);
    if (!ctx_) return NotOpen(env);
    return Queue(
        env, ctx_, name, [h, op](EsysContext& c, Result&) { return (c.*op)(h); }, nullptr);
  }

  static Napi::Value HandleResult(Napi::Env e, const Result& r) { return Napi::Number::New(e, r.n); }
  static Napi::Value BytesResult(Napi::Env e, const Result& r) { return Buf(e, r.a); }

  std::shared_ptr<EsysContext> ctx_;
};

struct AddonData {
  Napi::FunctionReference contextClass;
};

// open(tcti, options?): connects on a worker thread, then wraps the context in a Tpm2Context.
class OpenWorker : public Napi::AsyncWorker {
 public:
  OpenWorker(Napi::Env env, std::string tcti, bool paramEncryption)
      : Napi::AsyncWorker(env, "keyhop:tpm2:open"),
        deferred_(Napi::Promise::Deferred::New(env)),
        ctx_(std::make_shared<EsysContext>()),
        tcti_(std::move(tcti)),
        paramEncryption_(paramEncryption) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    std::lock_guard<std::mutex> lock(ctx_->mutex());
    status_ = ctx_->Open(tcti_, paramEncryption_);
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (!status_.ok()) {
      Napi::Value err = TpmErrorValue(env, status_);
      err.As<Napi::Object>().Set("tcti", Napi::String::New(env, tcti_));
      deferred_.Reject(err);
      return;
    }
    AddonData* data = env.GetInstanceData<AddonData>();
    Napi::Object obj = data->contextClass.New({});
    if (env.IsExceptionPending()) {
      deferred_.Reject(env.GetAndClearPendingException().Value());
      return;
    }
    Context::Unwrap(obj)->Attach(ctx_);
    obj.Set("tcti", Napi::String::New(env, tcti_));
    deferred_.Resolve(obj);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<EsysContext> ctx_;
  std::string tcti_;
  bool paramEncryption_;
  Status status_;
};

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    return Rejected(env, "EINVAL", "tcti must be a string such as device:/dev/tpmrm0");
  }
  std::string tcti = info[0].As<Napi::String>().Utf8Value();
  if (tcti.empty() || tcti.size() > 1024 || tcti.find('\0') != std::string::npos) {
    return Rejected(env, "EINVAL", "tcti must be a non-empty string without NUL bytes");
  }
  bool paramEncryption = true;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsObject()) return Rejected(env, "EINVAL", "options must be an object");
    Napi::Value pe = info[1].As<Napi::Object>().Get("paramEncryption");
    if (env.IsExceptionPending()) return env.Undefined();
    if (!pe.IsUndefined() && !pe.IsBoolean()) return Rejected(env, "EINVAL", "paramEncryption must be a boolean");
    if (pe.IsBoolean()) paramEncryption = pe.As<Napi::Boolean>().Value();
  }
  OpenWorker* w = new OpenWorker(env, std::move(tcti), paramEncryption);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value DecodeRc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return env.Undefined();
  const char* s = Tss2_RC_Decode(info[0].As<Napi::Number>().Uint32Value());
  return Napi::String::New(env, s != nullptr ? s : "");
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  AddonData* data = new AddonData();
  data->contextClass = Napi::Persistent(Context::Define(env));
  env.SetInstanceData<AddonData>(data);  // deleted by Node-API at environment teardown
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("decodeRc", Napi::Function::New(env, DecodeRc, "decodeRc"));
  exports.Set("supported", Napi::Boolean::New(env, true));
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  Napi::Object limits = Napi::Object::New(env);
  limits.Set("maxRandom", Napi::Number::New(env, kMaxRandom));
  exports.Set("limits", limits);
  return exports;
}

}  // namespace
}  // namespace tpm2
}  // namespace keyhop

static Napi::Object InitKeyhopTpm2(Napi::Env env, Napi::Object exports) { return keyhop::tpm2::Init(env, exports); }

NODE_API_MODULE(keyhop_tpm2, InitKeyhopTpm2)
