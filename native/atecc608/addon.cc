// addon.cc: Node-API binding of the ATECC608 I2C transaction (keyhop_atecc608.node).
//
//   transact(options) -> Promise<{ responses: Buffer[], wakeToken: Buffer | null,
//                                  timings: { wakeUs, stepsUs: number[], totalUs } }>
//
// Arguments are validated here, on the JS thread, before anything is queued; the transaction itself
// (every call that touches the bus, including open and flock) runs on a libuv worker thread, so the
// event loop is never blocked. Failures reject with an Error carrying a stable `code` (see
// i2c_transaction.h and native/README.md). Built without C++ exceptions
// (NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS), in both binding.gyp and native/CMakeLists.txt.
#include <napi.h>

#include <cmath>
#include <string>
#include <utility>

#include "i2c_transaction.h"

namespace keyhop {
namespace atecc608 {
namespace {

Napi::Error MakeError(Napi::Env env, const std::string& code, const std::string& message,
                      const std::string& device, int address, int sysErrno) {
  Napi::Error err = Napi::Error::New(env, message);
  Napi::Object o = err.Value();
  o.Set("code", Napi::String::New(env, code));
  o.Set("device", Napi::String::New(env, device));
  o.Set("address", Napi::Number::New(env, address));
  if (sysErrno != 0) o.Set("sysErrno", Napi::Number::New(env, sysErrno));
  return err;
}

Napi::Value Rejected(Napi::Env env, const std::string& message) {
  Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
  Napi::Error err = Napi::Error::New(env, "keyhop_atecc608.transact: " + message);
  err.Value().Set("code", Napi::String::New(env, "EINVAL"));
  d.Reject(err.Value());
  return d.Promise();
}

// Reads an optional integer property; false (with *why set) when present but not an integer in range.
bool GetInt(const Napi::Object& o, const char* name, double min, double max, uint32_t dflt, uint32_t* out,
            std::string* why) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined()) {
    *out = dflt;
    return true;
  }
  if (!v.IsNumber()) {
    *why = std::string(name) + " must be a number";
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || d < min || d > max) {
    *why = std::string(name) + " must be an integer in " + std::to_string(static_cast<long long>(min)) + ".." +
           std::to_string(static_cast<long long>(max));
    return false;
  }
  *out = static_cast<uint32_t>(d);
  return true;
}

bool ParseRequest(const Napi::Value& arg, Request* req, std::string* why) {
  if (!arg.IsObject() || arg.IsArray()) {
    *why = "options must be an object";
    return false;
  }
  Napi::Object o = arg.As<Napi::Object>();

  Napi::Value device = o.Get("device");
  if (!device.IsString()) {
    *why = "device must be a string such as /dev/i2c-1";
    return false;
  }
  req->device = device.As<Napi::String>().Utf8Value();
  if (req->device.empty() || req->device.size() > 4095 || req->device.find('\0') != std::string::npos) {
    *why = "device must be a non-empty path without NUL bytes";
    return false;
  }

  Napi::Value address = o.Get("address");
  if (address.IsUndefined()) {
    *why = "address is required (7-bit, e.g. 0x60)";
    return false;
  }
  uint32_t u = 0;
  if (!GetInt(o, "address", kAddressMin, kAddressMax, 0, &u, why)) return false;
  req->address = static_cast<int>(u);

  Napi::Value wake = o.Get("wake");
  if (!wake.IsUndefined() && !wake.IsBoolean()) {
    *why = "wake must be a boolean";
    return false;
  }
  req->wake = wake.IsUndefined() ? true : wake.As<Napi::Boolean>().Value();
  if (!GetInt(o, "wakeDelayUs", 0, 1000000, 1500, &req->wakeDelayUs, why)) return false;
  if (!GetInt(o, "wakeRetries", 0, 100, 3, &req->wakeRetries, why)) return false;
  if (!GetInt(o, "pollIntervalUs", 50, 1000000, 1000, &req->pollIntervalUs, why)) return false;
  if (!GetInt(o, "lockTimeoutMs", 0, 600000, 5000, &req->lockTimeoutMs, why)) return false;

  Napi::Value end = o.Get("end");
  if (end.IsUndefined()) {
    req->end = End::Idle;
  } else {
    std::string e = end.IsString() ? end.As<Napi::String>().Utf8Value() : std::string();
    if (e == "idle") {
      req->end = End::Idle;
    } else if (e == "sleep") {
      req->end = End::Sleep;
    } else if (e == "none") {
      req->end = End::None;
    } else {
      *why = "end must be 'idle', 'sleep' or 'none'";
      return false;
    }
  }

  Napi::Value steps = o.Get("steps");
  if (!steps.IsArray()) {
    *why = "steps must be an array";
    return false;
  }
  Napi::Array arr = steps.As<Napi::Array>();
  if (arr.Length() > kMaxSteps) {
    *why = "at most " + std::to_string(kMaxSteps) + " steps per transaction";
    return false;
  }
  for (uint32_t i = 0; i < arr.Length(); i++) {
    const std::string at = "steps[" + std::to_string(i) + "]";
    Napi::Value sv = arr.Get(i);
    if (!sv.IsObject()) {
      *why = at + " must be an object";
      return false;
    }
    Napi::Object so = sv.As<Napi::Object>();
    Napi::Value pv = so.Get("packet");
    if (!pv.IsTypedArray() || pv.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      *why = at + ".packet must be a Buffer or Uint8Array";
      return false;
    }
    Napi::Uint8Array pa = pv.As<Napi::Uint8Array>();
    if (pa.ByteLength() < kPacketMin || pa.ByteLength() > kPacketMax) {
      *why = at + ".packet must be " + std::to_string(kPacketMin) + ".." + std::to_string(kPacketMax) +
             " bytes, got " + std::to_string(pa.ByteLength());
      return false;
    }
    Step step;
    step.packet.assign(pa.Data(), pa.Data() + pa.ByteLength());  // copied: JS may reuse the buffer
    Napi::Value mv = so.Get("maxExecMs");
    double ms = mv.IsNumber() ? mv.As<Napi::Number>().DoubleValue() : -1;
    if (!std::isfinite(ms) || ms < 0 || ms > 60000) {
      *why = at + ".maxExecMs must be a number in 0..60000";
      return false;
    }
    step.maxExecMs = static_cast<uint32_t>(std::ceil(ms));
    req->steps.push_back(std::move(step));
  }
  return true;
}

class TransactWorker : public Napi::AsyncWorker {
 public:
  TransactWorker(Napi::Env env, Request req)
      : Napi::AsyncWorker(env, "keyhop:atecc608:transact"),
        deferred_(Napi::Promise::Deferred::New(env)),
        req_(std::move(req)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override { res_ = RunTransaction(req_); }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (!res_.ok) {
      deferred_.Reject(MakeError(env, res_.code, res_.message, req_.device, req_.address, res_.sysErrno).Value());
      return;
    }
    Napi::Object out = Napi::Object::New(env);
    Napi::Array responses = Napi::Array::New(env, res_.responses.size());
    for (size_t i = 0; i < res_.responses.size(); i++) {
      const auto& r = res_.responses[i];
      responses.Set(static_cast<uint32_t>(i), Napi::Buffer<uint8_t>::Copy(env, r.data(), r.size()));
    }
    out.Set("responses", responses);
    out.Set("wakeToken", res_.haveWakeToken
                             ? Napi::Value(Napi::Buffer<uint8_t>::Copy(env, res_.wakeToken.data(), res_.wakeToken.size()))
                             : env.Null());
    Napi::Object timings = Napi::Object::New(env);
    timings.Set("wakeUs", Napi::Number::New(env, static_cast<double>(res_.timings.wakeUs)));
    Napi::Array steps = Napi::Array::New(env, res_.timings.stepsUs.size());
    for (size_t i = 0; i < res_.timings.stepsUs.size(); i++) {
      steps.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(res_.timings.stepsUs[i])));
    }
    timings.Set("stepsUs", steps);
    timings.Set("totalUs", Napi::Number::New(env, static_cast<double>(res_.timings.totalUs)));
    out.Set("timings", timings);
    deferred_.Resolve(out);
  }

  // Execute() never calls SetError; failures travel in res_ and are rejected in OnOK().
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Request req_;
  Result res_;
};

Napi::Value Transact(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Request req;
  std::string why;
  bool ok = ParseRequest(info.Length() > 0 ? info[0] : env.Undefined(), &req, &why);
  if (env.IsExceptionPending()) return env.Undefined();  // a throwing getter on the options object
  if (!ok) return Rejected(env, why);
#ifndef __linux__
  Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
  Result r = RunTransaction(req);  // returns UNSUPPORTED without touching anything
  d.Reject(MakeError(env, r.code, r.message, req.device, req.address, 0).Value());
  return d.Promise();
#else
  TransactWorker* worker = new TransactWorker(env, std::move(req));
  Napi::Promise p = worker->Promise();
  worker->Queue();  // the worker deletes itself after OnOK/OnError
  return p;
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("transact", Napi::Function::New(env, Transact, "transact"));
#ifdef __linux__
  exports.Set("supported", Napi::Boolean::New(env, true));
#else
  exports.Set("supported", Napi::Boolean::New(env, false));
#endif
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  Napi::Object limits = Napi::Object::New(env);
  limits.Set("addressMin", Napi::Number::New(env, kAddressMin));
  limits.Set("addressMax", Napi::Number::New(env, kAddressMax));
  limits.Set("packetMin", Napi::Number::New(env, static_cast<double>(kPacketMin)));
  limits.Set("packetMax", Napi::Number::New(env, static_cast<double>(kPacketMax)));
  limits.Set("maxSteps", Napi::Number::New(env, static_cast<double>(kMaxSteps)));
  exports.Set("limits", limits);
  return exports;
}

}  // namespace
}  // namespace atecc608
}  // namespace keyhop

static Napi::Object InitKeyhopAtecc608(Napi::Env env, Napi::Object exports) {
  return keyhop::atecc608::Init(env, exports);
}

NODE_API_MODULE(keyhop_atecc608, InitKeyhopAtecc608)
