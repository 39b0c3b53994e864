#pragma once
/// Exception types of the C++ core; bindings/register_errors.cpp maps them to Python.
#include <stdexcept>
#include <string>

#include "gprat/core/types.hpp"

namespace gprat {

/// Bad argument, shape or value at a public entry point (Python: ValueError).
class InvalidArgument : public std::invalid_argument
{
  public:
    using std::invalid_argument::invalid_argument;
};

/// A matrix that must be symmetric positive definite is not (Python: NotPositiveDefiniteError).
/// order() is the 1-based global order of the leading minor that is not positive definite,
/// the same number LAPACK's potrf reports in info for the whole matrix.
class NotPositiveDefinite : public std::runtime_error
{
  public:
    explicit NotPositiveDefinite(Index order)
        : std::runtime_error("the leading minor of order " + std::to_string(order) +
                             " is not positive definite"),
          order_(order)
    {}
    Index order() const noexcept { return order_; }

  private:
    Index order_;
};

/// A LAPACK routine reported an illegal argument or an unexpected failure (a bug, not bad data).
class LapackError : public std::runtime_error
{
  public:
    LapackError(const char* routine, Index info)
        : std::runtime_error(std::string("LAPACK ") + routine + " failed with info=" + std::to_string(info)),
          info_(info)
    {}
    Index info() const noexcept { return info_; }

  private:
    Index info_;
};

/// The requested backend was not built or no device is present (Python: BackendUnavailableError).
class BackendUnavailable : public std::runtime_error
{
  public:
    using std::runtime_error::runtime_error;
};

/// A task graph was cancelled before it finished (interrupt, or stop()); Python sees the
/// interrupting exception (KeyboardInterrupt) instead when one is pending.
class Cancelled : public std::runtime_error
{
  public:
    using std::runtime_error::runtime_error;
};

/// The runtime cannot accept work in its current state (suspended).
class RuntimeStateError : public std::runtime_error
{
  public:
    using std::runtime_error::runtime_error;
};

}  // namespace gprat
