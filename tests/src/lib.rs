//! Plexus test harness (skeleton; filled by the topology issue).
