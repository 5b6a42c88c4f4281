//! The FHIRPath error type. Messages name types and functions, never values
//! from the resource, so they are safe to log.

/// Why an expression could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FhirPathError {
    /// The text is not a FHIRPath expression.
    #[error("syntax error at offset {offset}: {message}")]
    Syntax { offset: usize, message: String },
    /// A function name the engine does not know.
    #[error("unknown function `{0}`")]
    UnknownFunction(String),
    /// A function called with the wrong number of arguments.
    #[error("function `{name}` takes {expected} argument(s), got {got}")]
    Arity {
        name: &'static str,
        expected: &'static str,
        got: usize,
    },
    /// `%name` that is not defined.
    #[error("unknown variable `%{0}`")]
    UnknownVariable(String),
    /// An element name that the type does not have (strict mode only).
    #[error("type `{type_name}` has no element `{name}`")]
    UnknownElement { type_name: String, name: String },
    /// An operator or function applied to a type it does not accept.
    #[error("type error: {0}")]
    Type(String),
    /// A single item was required but the collection had more.
    #[error("expected at most one item, got {0}")]
    NotSingleton(usize),
    /// A bad argument value (regex, encoding name, profile URL…).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A bound on depth, size or length was hit.
    #[error("limit exceeded: {0}")]
    Limit(&'static str),
}

pub(crate) type Result<T> = std::result::Result<T, FhirPathError>;
