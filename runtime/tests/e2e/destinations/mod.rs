//! Flushers for the backends people run, end to end against real servers
//! where they can be had here (ClickHouse, an S3 server), else against
//! receivers that decode with the protocol's official definitions and
//! answer as the real servers do, failures included.

mod clickhouse;
mod elasticsearch;
mod loki;
mod otlp;
mod s3;
mod splunk;
