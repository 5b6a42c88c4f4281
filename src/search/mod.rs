//! Search: index extraction at write time (and, with the search issue, parameter
//! definitions, parsing and SQL generation).

pub mod compartment;
pub mod dates;
pub mod definitions;
pub mod include;
pub mod index;
pub mod normalize;
pub mod plan;
pub mod query;
pub mod shape;
pub mod sql;
pub mod to_rows;
pub mod values;
pub mod valueset;
