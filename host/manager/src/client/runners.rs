//! The fleet view: registered runners, their labels, when each was last seen, the runs it holds.

use reqwest::Method;

use super::{ManagerClient, Result};
use crate::protocol::{RunnerInfo, RunnerList};

impl ManagerClient {
    /// Every registered runner (`GET /v1/runners`).
    pub async fn list_runners(&self) -> Result<Vec<RunnerInfo>> {
        let list: RunnerList = self
            .call(Method::GET, "/runners", Self::NO_BODY, None)
            .await?;
        Ok(list.runners)
    }
}
