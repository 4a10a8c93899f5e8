//! What the commands show and send, apart from the calls that fetch and send
//! it: pure functions from objects (and `now`) to tables, summaries, reports
//! and patches, unit-tested without a cluster.

pub mod backups;
pub mod list;
pub mod portal;
pub mod scale;
pub mod status;
pub mod tenant;
