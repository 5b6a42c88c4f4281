//! FHIR resource model glue: type names, ids, OperationOutcome, Bundles,
//! the CapabilityStatement, JSON/XML formats, structural validation, primitive
//! formats and required bindings.

pub mod bindings;
pub mod bundle;
pub mod capability;
pub mod elements;
pub mod format;
pub mod instant;
pub mod limits;
pub mod media;
pub mod outcome;
pub mod primitives;
pub mod resource;
pub mod resource_types;
pub mod validate;

pub use resource_types::{is_valid_id, ResourceType};
