//! Ingestion's domain: validation, normalisation and identity resolution. Pure logic, no IO; the input types are the
//! API's protobuf messages, validated here into domain values.

pub mod activity;
pub mod batch;
pub mod consent;
pub mod customer;
pub mod identifier;
pub mod identity;
pub mod money;
pub mod order;
pub mod text;
