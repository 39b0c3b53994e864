#include "gprat/runtime/graph_record.hpp"

#include <pthread.h>

#include <algorithm>
#include <sstream>
#include <tuple>

namespace gprat::runtime {

namespace {
GraphRecorder* the_recorder = nullptr;
std::once_flag recorder_once;
}  // namespace

GraphRecorder& GraphRecorder::instance()
{
    // Never destroyed (a worker may record while static destructors run). pthread_atfork holds
    // mutex_ from prepare until parent/child, so the child never inherits it locked by a thread
    // that does not exist there (its first node() would block forever). The same scheme as the
    // executor's lifecycle lock (executor.cpp); unlike the executor, the recorder holds plain
    // data only, so the child keeps it and just unlocks.
    std::call_once(recorder_once, [] {
        the_recorder = new GraphRecorder();
        pthread_atfork([] { the_recorder->mutex_.lock(); }, [] { the_recorder->mutex_.unlock(); },
                       [] { the_recorder->mutex_.unlock(); });
    });
    return *the_recorder;
}

Index GraphRecorder::new_graph()
{
    std::lock_guard lock(mutex_);
    return graphs_++;
}

void GraphRecorder::node(Index graph, Index task, const char* name, int priority)
{
    std::lock_guard lock(mutex_);
    recorded_.nodes.push_back({graph, task, name, priority});
}

void GraphRecorder::edge(Index graph, Index from, Index to)
{
    std::lock_guard lock(mutex_);
    recorded_.edges.push_back({graph, from, to});
}

RecordedGraphs GraphRecorder::take()
{
    RecordedGraphs out;
    {
        std::lock_guard lock(mutex_);
        out.nodes.swap(recorded_.nodes);
        out.edges.swap(recorded_.edges);
    }
    // Graphs built concurrently by several threads interleave in recording order; to_dot wants
    // each graph's nodes together.
    const auto node_key = [](const GraphNode& n) { return std::tie(n.graph, n.task); };
    std::sort(out.nodes.begin(), out.nodes.end(),
              [&](const GraphNode& a, const GraphNode& b) { return node_key(a) < node_key(b); });
    // A task reading two tiles written by one predecessor derives the same edge twice.
    const auto key = [](const GraphEdge& e) { return std::tie(e.graph, e.from, e.to); };
    std::sort(out.edges.begin(), out.edges.end(), [&](const GraphEdge& a, const GraphEdge& b) { return key(a) < key(b); });
    out.edges.erase(std::unique(out.edges.begin(), out.edges.end(),
                                [&](const GraphEdge& a, const GraphEdge& b) { return key(a) == key(b); }),
                    out.edges.end());
    return out;
}

std::string to_dot(const RecordedGraphs& graphs)
{
    std::ostringstream dot;
    dot << "digraph gprat {\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\"];\n";
    Index open = -1;
    for (const GraphNode& n : graphs.nodes) {
        if (n.graph != open) {
            if (open >= 0) { dot << "  }\n"; }
            open = n.graph;
            dot << "  subgraph cluster_" << n.graph << " {\n    label=\"graph " << n.graph << "\";\n";
        }
        dot << "    g" << n.graph << "_t" << n.task << " [label=\"" << n.name << " #" << n.task << " (p=" << n.priority
            << ")\"];\n";
    }
    if (open >= 0) { dot << "  }\n"; }
    for (const GraphEdge& e : graphs.edges)
        dot << "  g" << e.graph << "_t" << e.from << " -> g" << e.graph << "_t" << e.to << ";\n";
    dot << "}\n";
    return dot.str();
}

}  // namespace gprat::runtime
