#pragma once
/// A tiny self-contained test harness (no external framework is available).
///
///   TEST(name) { CHECK(x == 1); CHECK_EQ(a, b); CHECK_THROWS_AS(f(), gprat::Cancelled); }
///   int main(int argc, char** argv) { return gprat_test::run_all(argc, argv); }
///
/// - CHECK* record a failure (file:line, expression, values) and carry on; REQUIRE* also abort
///   the current test. They are safe to use from any thread (task bodies on worker threads).
/// - An exception escaping a test counts as a failure of that test.
/// - Each test runs under a watchdog: past GPRAT_TEST_TIMEOUT seconds (default 300) the process
///   prints what hung and exits with status 3, so a deadlock cannot stall a CI job.
/// - Command-line arguments are substrings; only tests whose name contains one of them run.
/// - The LAST line printed is exactly "N passed, M failed"; the exit status is non-zero iff M > 0.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <typeinfo>
#include <utility>
#include <vector>

namespace gprat_test {

struct TestCase
{
    const char* name;
    void (*fn)();
};

inline std::vector<TestCase>& registry()
{
    static std::vector<TestCase> tests;
    return tests;
}

struct Registrar
{
    Registrar(const char* name, void (*fn)()) { registry().push_back({name, fn}); }
};

/// Thrown by REQUIRE* to leave the current test.
struct AbortTest
{};

inline std::atomic<long>& failures_in_current_test()
{
    static std::atomic<long> n{0};
    return n;
}

inline std::mutex& output_mutex()
{
    static std::mutex m;
    return m;
}

inline void report_failure(const char* file, int line, const std::string& what)
{
    const long n = ++failures_in_current_test();
    if (n > 20) { return; }  // keep the log readable when a loop fails many times
    std::lock_guard lock(output_mutex());
    std::cout << "    FAILED " << file << ":" << line << ": " << what << (n == 20 ? "  (further failures muted)" : "")
              << std::endl;
}

template <typename T>
std::string show(const T& v)
{
    if constexpr (requires(std::ostream& os) { os << v; }) {
        std::ostringstream s;
        s.precision(17);
        s << v;
        return s.str();
    } else {
        return "<" + std::string(typeid(T).name()) + ">";
    }
}

/// Seconds a single test may take before the watchdog kills the process.
inline double timeout_seconds()
{
    const char* env = std::getenv("GPRAT_TEST_TIMEOUT");
    if (env != nullptr && *env != '\0') {
        const double v = std::atof(env);
        if (v > 0) { return v; }
    }
    return 300.0;
}

class Watchdog
{
  public:
    explicit Watchdog(const char* name) : name_(name), thread_([this] { watch(); }) {}
    ~Watchdog()
    {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }

  private:
    void watch()
    {
        std::unique_lock lock(mutex_);
        const auto limit = std::chrono::duration<double>(timeout_seconds());
        if (!cv_.wait_for(lock, limit, [this] { return done_; })) {
            std::fprintf(stderr, "\nTIMEOUT: test '%s' still running after %.0f s (deadlock?)\n", name_,
                         timeout_seconds());
            std::printf("\nTIMEOUT in %s\n0 passed, 1 failed\n", name_);
            std::fflush(nullptr);
            std::_Exit(3);
        }
    }

    const char* name_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool done_ = false;
    std::thread thread_;
};

inline int run_all(int argc, char** argv)
{
    int passed = 0, failed = 0;
    std::vector<std::string> failed_names;
    for (const TestCase& t : registry()) {
        bool selected = argc <= 1;
        for (int i = 1; i < argc; ++i) selected = selected || std::string(t.name).find(argv[i]) != std::string::npos;
        if (!selected) { continue; }
        {
            std::lock_guard lock(output_mutex());
            std::cout << "[ RUN  ] " << t.name << std::endl;
        }
        failures_in_current_test() = 0;
        const auto start = std::chrono::steady_clock::now();
        {
            Watchdog watchdog(t.name);
            try {
                t.fn();
            } catch (const AbortTest&) {
                // failure already recorded
            } catch (const std::exception& e) {
                report_failure(__FILE__, __LINE__,
                               std::string("unexpected exception ") + typeid(e).name() + ": " + e.what());
            } catch (...) {
                report_failure(__FILE__, __LINE__, "unexpected non-std exception");
            }
        }
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const bool ok = failures_in_current_test() == 0;
        (ok ? passed : failed) += 1;
        if (!ok) { failed_names.emplace_back(t.name); }
        std::lock_guard lock(output_mutex());
        std::cout << (ok ? "[  OK  ] " : "[ FAIL ] ") << t.name << " (" << static_cast<long>(secs * 1000) << " ms)"
                  << std::endl;
    }
    for (const std::string& n : failed_names) std::cout << "failed: " << n << "\n";
    std::cout << passed << " passed, " << failed << " failed" << std::endl;
    return failed == 0 ? 0 : 1;
}

}  // namespace gprat_test

#define GPRAT_TEST_CONCAT2(a, b) a##b
#define GPRAT_TEST_CONCAT(a, b) GPRAT_TEST_CONCAT2(a, b)

#define TEST(name)                                                                                 \
    static void gprat_test_fn_##name();                                                           \
    static const ::gprat_test::Registrar GPRAT_TEST_CONCAT(gprat_test_reg_, name){#name,          \
                                                                                 &gprat_test_fn_##name}; \
    static void gprat_test_fn_##name()

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) { ::gprat_test::report_failure(__FILE__, __LINE__, "CHECK(" #cond ")"); }     \
    } while (false)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            ::gprat_test::report_failure(__FILE__, __LINE__, "REQUIRE(" #cond ")");                \
            throw ::gprat_test::AbortTest{};                                                       \
        }                                                                                          \
    } while (false)

/// Adds a message (streamed) to a failing check: CHECK_MSG(ok, "i=" << i).
#define CHECK_MSG(cond, msg)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            std::ostringstream gprat_test_os_;                                                     \
            gprat_test_os_ << "CHECK(" #cond ") " << msg;                                          \
            ::gprat_test::report_failure(__FILE__, __LINE__, gprat_test_os_.str());                \
        }                                                                                          \
    } while (false)

#define GPRAT_TEST_CMP(kind, a, op, b, on_fail)                                                    \
    do {                                                                                           \
        const auto& gprat_test_a_ = (a);                                                           \
        const auto& gprat_test_b_ = (b);                                                           \
        if (!(gprat_test_a_ op gprat_test_b_)) {                                                   \
            ::gprat_test::report_failure(__FILE__, __LINE__,                                       \
                                         std::string(kind "(" #a ", " #b "): ") +                  \
                                             ::gprat_test::show(gprat_test_a_) + " vs " +          \
                                             ::gprat_test::show(gprat_test_b_));                   \
            on_fail;                                                                               \
        }                                                                                          \
    } while (false)

#define CHECK_EQ(a, b) GPRAT_TEST_CMP("CHECK_EQ", a, ==, b, (void)0)
#define CHECK_NE(a, b) GPRAT_TEST_CMP("CHECK_NE", a, !=, b, (void)0)
#define CHECK_LT(a, b) GPRAT_TEST_CMP("CHECK_LT", a, <, b, (void)0)
#define CHECK_LE(a, b) GPRAT_TEST_CMP("CHECK_LE", a, <=, b, (void)0)
#define CHECK_GE(a, b) GPRAT_TEST_CMP("CHECK_GE", a, >=, b, (void)0)
#define REQUIRE_EQ(a, b) GPRAT_TEST_CMP("REQUIRE_EQ", a, ==, b, throw ::gprat_test::AbortTest{})

/// CHECK_THROWS_AS(expr, Type): expr must throw exactly something catchable as Type.
#define CHECK_THROWS_AS(expr, Type)                                                                \
    do {                                                                                           \
        bool gprat_test_caught_ = false;                                                           \
        try {                                                                                      \
            (void)(expr);                                                                          \
        } catch (const Type&) {                                                                    \
            gprat_test_caught_ = true;                                                             \
        } catch (const std::exception& gprat_test_e_) {                                            \
            ::gprat_test::report_failure(__FILE__, __LINE__,                                       \
                                         std::string("CHECK_THROWS_AS(" #expr ", " #Type "): threw ") + \
                                             typeid(gprat_test_e_).name() + ": " + gprat_test_e_.what()); \
            gprat_test_caught_ = true;                                                             \
        } catch (...) {                                                                            \
            ::gprat_test::report_failure(__FILE__, __LINE__,                                       \
                                         "CHECK_THROWS_AS(" #expr ", " #Type "): threw another type"); \
            gprat_test_caught_ = true;                                                             \
        }                                                                                          \
        if (!gprat_test_caught_) {                                                                 \
            ::gprat_test::report_failure(__FILE__, __LINE__,                                       \
                                         "CHECK_THROWS_AS(" #expr ", " #Type "): did not throw");  \
        }                                                                                          \
    } while (false)

#define CHECK_NOTHROW(expr)                                                                        \
    do {                                                                                           \
        try {                                                                                      \
            (void)(expr);                                                                          \
        } catch (const std::exception& gprat_test_e_) {                                            \
            ::gprat_test::report_failure(__FILE__, __LINE__, std::string("CHECK_NOTHROW(" #expr "): threw ") + \
                                                                 typeid(gprat_test_e_).name() + ": " +   \
                                                                 gprat_test_e_.what());            \
        }                                                                                          \
    } while (false)
