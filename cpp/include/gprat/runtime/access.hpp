#pragma once
/// Data accesses declared by tasks. A task argument wrapped in Read<V> or Write<V> names a
/// region of memory, the bytes [begin, end) of the data it points to; TaskGraph derives
/// dependencies from them (read-after-write, write-after-read, write-after-write) and hands the
/// task the plain value V when it runs.
///
/// Contract (checked by TaskGraph::add): dependencies are tracked per whole region, so two
/// regions a graph sees must be either the same (same start and extent) or disjoint. A region
/// that overlaps a known one otherwise (a sub-view of a tile, a shifted view) is refused with
/// InvalidArgument, since no dependency would order the two.
///
/// The extent of a region:
/// - a pointer T*: one T (one byte for void*), unless `bytes` is given;
/// - a view with data(), rows(), cols(), ld() (column-major, e.g. TileView): from data() to one
///   past its last element, ((cols - 1) * ld + rows) elements;
/// - a view with data() and size() (a span): size() elements;
/// - an explicit `bytes` (> 0) overrides these: Write<double*>{p, n * sizeof(double)}.
/// An empty region counts as one byte at its start.
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace gprat::runtime {

template <typename V>
struct Read
{
    V value;
    std::size_t bytes = 0;  ///< extent in bytes; 0: derived from the value
};

template <typename V>
struct Write
{
    V value;
    std::size_t bytes = 0;  ///< extent in bytes; 0: derived from the value
};

template <typename V> Read(V) -> Read<V>;
template <typename V> Read(V, std::size_t) -> Read<V>;
template <typename V> Write(V) -> Write<V>;
template <typename V> Write(V, std::size_t) -> Write<V>;

template <typename A> struct is_access : std::false_type {};
template <typename V> struct is_access<Read<V>> : std::true_type {};
template <typename V> struct is_access<Write<V>> : std::true_type {};

namespace detail {

/// The bytes [begin, end) an access names, and whether it writes them.
struct Access
{
    std::uintptr_t begin = 0, end = 0;
    bool write = false;
};

template <typename V>
std::uintptr_t extent_of(const V& v)
{
    if constexpr (std::is_pointer_v<V>) {
        using T = std::remove_cv_t<std::remove_pointer_t<V>>;
        if constexpr (std::is_void_v<T>) { return 1; }
        else { return sizeof(T); }
    } else if constexpr (requires { v.data(); v.rows(); v.cols(); v.ld(); }) {
        using T = std::remove_cv_t<std::remove_pointer_t<decltype(v.data())>>;
        if (v.rows() <= 0 || v.cols() <= 0) { return 0; }
        return static_cast<std::uintptr_t>((v.cols() - 1) * v.ld() + v.rows()) * sizeof(T);
    } else if constexpr (requires { v.data(); v.size(); }) {
        using T = std::remove_cv_t<std::remove_pointer_t<decltype(v.data())>>;
        return static_cast<std::uintptr_t>(v.size()) * sizeof(T);
    } else {
        static_assert(std::is_pointer_v<V>, "Read/Write need a pointer or a view with data() and its extent");
        return 0;
    }
}

template <typename V>
const void* start_of(const V& v)
{
    if constexpr (std::is_pointer_v<V>) { return static_cast<const void*>(v); }
    else { return static_cast<const void*>(v.data()); }
}

template <typename A>
Access access_of(const A& a)
{
    const auto begin = reinterpret_cast<std::uintptr_t>(start_of(a.value));
    const std::uintptr_t extent = a.bytes != 0 ? a.bytes : extent_of(a.value);
    return {begin, begin + (extent == 0 ? 1 : extent), std::is_same_v<A, Write<decltype(a.value)>>};
}

}  // namespace detail

/// The value a task body receives for an argument: the view inside an access, else the argument.
template <typename A>
decltype(auto) unwrap(A& a)
{
    if constexpr (is_access<std::remove_cvref_t<A>>::value) { return (a.value); }
    else { return (a); }
}

}  // namespace gprat::runtime
