//! What a request can get wrong, and what can go wrong serving it: each an HTTP status
//! and a JSON body naming the field at fault.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use thiserror::Error;

/// Why a request was refused or failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ServeError {
    /// The request is malformed or asks for too much (400).
    #[error("{field}: {message}")]
    BadRequest {
        /// The field at fault, e.g. `inputs[2]` (empty: the body as a whole).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// An adaptation id the server does not know (404).
    #[error("no adaptation `{id}` (it was never made here, or was evicted; send the instruction instead)")]
    UnknownAdaptation {
        /// The id.
        id: String,
    },
    /// The queue is full (503): the client should retry later.
    #[error("the server is busy: {queued} requests are waiting; retry later")]
    Busy {
        /// Requests waiting.
        queued: usize,
    },
    /// The server is shutting down (503).
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The model failed on this request (500); the server goes on.
    #[error("the model failed: {0}")]
    Model(String),
}

impl ServeError {
    /// A 400 about `field`.
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadRequest {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::UnknownAdaptation { .. } => StatusCode::NOT_FOUND,
            Self::Busy { .. } | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::Model(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Self::BadRequest { field, .. } if !field.is_empty() => Some(field),
            Self::UnknownAdaptation { .. } => Some("adaptation_id"),
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    message: String,
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::BadRequest { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let body = Body {
            error: Detail {
                status: status.as_u16(),
                field: self.field(),
                message,
            },
        };
        (status, axum::Json(body)).into_response()
    }
}
