//! Jobs: the spec a client submits, their durable records, and everything
//! the daemon does for one job (source, outputs, log, record, execution).

pub mod exec;
pub mod log;
pub mod outputs;
pub mod record;
pub mod source;
pub mod spec;
pub mod store;
