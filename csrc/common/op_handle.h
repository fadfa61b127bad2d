#pragma once
// The typed dispatcher handle of one of our registered ops (looked up once per call site, kept in
// a function-local static): how C++ code calls an op through the dispatcher, so autograd, fakes
// and every backend apply.
#include <ATen/core/dispatch/Dispatcher.h>

namespace convpool {

template <typename Signature>
c10::TypedOperatorHandle<Signature> op_handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

}  // namespace convpool
