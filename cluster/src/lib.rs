//! The replicated hub record, the island manager and the fairness planner, and the
//! openraft glue (DESIGN.md §3). Built by the cluster and planner issues.
