#pragma once
/// Task priorities for right-looking tiled algorithms: work on an earlier panel comes first,
/// and within a panel the factorization kernel, then the panel solve, then the updates.
/// Updates are ranked by the panel they feed, so the update of panel k+1 (lookahead) runs
/// before the updates of later panels.
#include "gprat/core/types.hpp"

namespace gprat::linalg {

enum class Stage : int { Update = 1, PanelSolve = 2, Factor = 3 };

/// @param nt number of panels; @param k panel the task feeds.
inline int priority(Index nt, Index k, Stage stage) { return static_cast<int>((nt - k) * 4) + static_cast<int>(stage); }

}  // namespace gprat::linalg
