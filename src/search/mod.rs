//! Search: index extraction at write time (and, with the search issue, parameter
//! definitions, parsing and SQL generation).

pub mod index;
pub mod normalize;
