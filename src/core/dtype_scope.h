// RAII default-dtype scope: modules built inside it allocate their parameters in `dtype`, so a
// bf16 12B transformer never exists in fp32 (24 GB instead of 48 GB of host memory).
#pragma once
#include <c10/core/DefaultDtype.h>
#include <c10/core/ScalarType.h>

namespace fluxtrain {

class DefaultDtypeScope {
 public:
  explicit DefaultDtypeScope(c10::ScalarType dtype) : saved_(c10::get_default_dtype()) {
    c10::set_default_dtype(c10::scalarTypeToTypeMeta(dtype));
  }
  ~DefaultDtypeScope() { c10::set_default_dtype(saved_); }
  DefaultDtypeScope(const DefaultDtypeScope&) = delete;
  DefaultDtypeScope& operator=(const DefaultDtypeScope&) = delete;

 private:
  caffe2::TypeMeta saved_;
};

}  // namespace fluxtrain
