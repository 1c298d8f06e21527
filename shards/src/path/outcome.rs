//! How a phase of the request path stops short. One type for every phase, so that the
//! driver ([`crate::path`]) has one place that answers a stopped request.

use crate::error::{GatewayError, Retry};

/// Why a request ended without a response reaching the client (yet).
#[derive(Debug)]
pub enum Stop {
    /// The client went away (or closed between requests): there is no one to answer.
    ClientGone,
    /// Answer the client with the gateway's own error.
    Error(GatewayError),
    /// A provider's failure response, already rendered for the client (status line, headers,
    /// body), kept in case no other attempt does better.
    Kept { status: u16, response: Vec<u8> },
}

impl Stop {
    /// The status the client got, or would have got (499: it left first).
    pub fn status(&self) -> u16 {
        match self {
            Self::ClientGone => 499,
            Self::Error(e) => e.status(),
            Self::Kept { status, .. } => *status,
        }
    }
}

impl Stop {
    /// What failover does after this failure: the error's own policy, or the policy for
    /// the provider's status.
    pub fn retry(&self) -> Retry {
        match self {
            Self::ClientGone => Retry::Never,
            Self::Error(e) => e.retry(),
            Self::Kept { status, .. } => Retry::of_status(*status),
        }
    }
}

impl From<GatewayError> for Stop {
    fn from(e: GatewayError) -> Self {
        Self::Error(e)
    }
}
