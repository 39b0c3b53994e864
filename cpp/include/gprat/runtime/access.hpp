#pragma once
/// Data accesses declared by tasks. A task argument wrapped in Read<V> or Write<V> names a piece
/// of data (keyed by its address); TaskGraph derives dependencies from them (read-after-write,
/// write-after-read, write-after-write) and hands the task the plain value V when it runs.
#include <type_traits>

namespace gprat::runtime {

namespace detail {
template <typename V>
const void* key_of(const V& v)
{
    if constexpr (std::is_pointer_v<V>) { return static_cast<const void*>(v); }
    else { return static_cast<const void*>(v.data()); }
}
}  // namespace detail

template <typename V>
struct Read
{
    V value;
    const void* key() const { return detail::key_of(value); }
};

template <typename V>
struct Write
{
    V value;
    const void* key() const { return detail::key_of(value); }
};

template <typename V> Read(V) -> Read<V>;
template <typename V> Write(V) -> Write<V>;

template <typename A> struct is_access : std::false_type {};
template <typename V> struct is_access<Read<V>> : std::true_type {};
template <typename V> struct is_access<Write<V>> : std::true_type {};

/// The value a task body receives for an argument: the view inside an access, else the argument.
template <typename A>
decltype(auto) unwrap(A& a)
{
    if constexpr (is_access<std::remove_cvref_t<A>>::value) { return (a.value); }
    else { return (a); }
}

}  // namespace gprat::runtime
