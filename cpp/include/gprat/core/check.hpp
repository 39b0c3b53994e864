#pragma once
/// Precondition checks. GPRAT_EXPECTS validates caller input and throws InvalidArgument with
/// the message; GPRAT_ASSERT states an internal invariant (a violated one is a bug).
#include <sstream>
#include <stdexcept>
#include <string>

#include "gprat/core/errors.hpp"

#define GPRAT_EXPECTS(cond, message)                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            std::ostringstream gprat_expects_stream_;                                              \
            gprat_expects_stream_ << message;                                                      \
            throw ::gprat::InvalidArgument(gprat_expects_stream_.str());                           \
        }                                                                                          \
    } while (false)

#define GPRAT_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            throw std::logic_error(std::string("gprat internal error: ") + #cond + " [" __FILE__ ":" + \
                                   std::to_string(__LINE__) + "]");                               \
        }                                                                                          \
    } while (false)
