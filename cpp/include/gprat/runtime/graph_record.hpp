#pragma once
/// Recording of the dependency graphs that TaskGraph derives, for a DOT dump (Graphviz).
/// While enabled, every task added to any TaskGraph becomes a node and every dependency the
/// graph derives from tile accesses (read after write, write after write, write after read)
/// becomes an edge, whether or not the predecessor had already finished: the dump shows the
/// algorithm's logical DAG, not a scheduling accident. Cheap enough to stay compiled in: one
/// relaxed atomic load per task and per derived dependency when disabled.
#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "gprat/core/types.hpp"

namespace gprat::runtime {

struct GraphNode
{
    Index graph;       ///< which recorded TaskGraph: numbered in order of their first recorded task,
                       ///< never reused in a process (a graph may outlive one recording)
    Index task;        ///< 0-based position of the task in its graph (submission order)
    const char* name;  ///< static string given to TaskGraph::add
    int priority;
};

struct GraphEdge
{
    Index graph;
    Index from;  ///< predecessor task
    Index to;    ///< the task that waits for it
};

struct RecordedGraphs
{
    std::vector<GraphNode> nodes;  ///< sorted by (graph, task)
    std::vector<GraphEdge> edges;  ///< duplicates removed, sorted by (graph, from, to)
};

class GraphRecorder
{
  public:
    static GraphRecorder& instance();

    void set_enabled(bool on) noexcept { enabled_.store(on, std::memory_order_relaxed); }
    bool enabled() const noexcept { return enabled_.load(std::memory_order_relaxed); }

    Index new_graph();
    void node(Index graph, Index task, const char* name, int priority);
    void edge(Index graph, Index from, Index to);

    /// Everything recorded since the last take(); the recorder is empty afterwards.
    RecordedGraphs take();

  private:
    std::atomic<bool> enabled_{false};
    std::mutex mutex_;
    Index graphs_ = 0;  ///< numbers handed out so far (not reset by take())
    RecordedGraphs recorded_;
};

/// Graphviz DOT text: one cluster per graph, nodes labelled "name #task (p=priority)".
std::string to_dot(const RecordedGraphs& graphs);

}  // namespace gprat::runtime
