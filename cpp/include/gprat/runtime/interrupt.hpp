#pragma once
/// Interrupt polling for long waits. The thread that waits on a task graph may install a check
/// (the Python bindings install one that runs PyErr_CheckSignals); TaskGraph::wait() calls it
/// every few milliseconds and cancels the graph when it returns true.
namespace gprat::runtime {

using InterruptCheck = bool (*)();

/// Installs `check` for the current thread while alive; restores the previous check afterwards.
class ScopedInterruptCheck
{
  public:
    explicit ScopedInterruptCheck(InterruptCheck check) noexcept;
    ~ScopedInterruptCheck();
    ScopedInterruptCheck(const ScopedInterruptCheck&) = delete;
    ScopedInterruptCheck& operator=(const ScopedInterruptCheck&) = delete;

  private:
    InterruptCheck previous_;
};

/// The check installed for the current thread, or nullptr.
InterruptCheck current_interrupt_check() noexcept;

}  // namespace gprat::runtime
