//! The `rekey` target (being written: refuses until it is).

use serde_json::{Map, Value};

use super::{Open, SendError, Target};
use crate::connectors::connections::Connection;

pub fn check(_conn: &Connection, _credentials: &Map<String, Value>) -> Result<(), String> {
    Err("delivery to this kind is not available yet".into())
}

pub async fn open(_o: Open<'_>) -> Result<Box<dyn Target>, SendError> {
    Err(SendError::Refused(
        "delivery to this kind is not available yet".into(),
    ))
}
