//! The synchronous analysis core: classify, then detect, then attribute.
//!
//! Deterministic and free of IO: the same trajectory and config always give the same
//! analysis. Runs on the pipeline's shard threads and in `faultline analyze`.

use std::sync::Arc;

use crate::attribute::attribute;
use crate::classify::{classify, ClassifyConfig};
use crate::detect::{detect, DetectConfig};
use crate::model::{Analysis, Trajectory};

#[derive(Debug, Clone, Default)]
pub struct AnalyzeConfig {
    pub classify: ClassifyConfig,
    pub detect: DetectConfig,
}

pub fn analyze(trajectory: Arc<Trajectory>, config: &AnalyzeConfig) -> Analysis {
    let steps = classify(&trajectory, &config.classify);
    let mut findings = detect(&trajectory, &steps, &config.detect);
    let (outcome, root_cause) = attribute(&trajectory, &steps, &mut findings);
    Analysis {
        trajectory,
        steps,
        findings,
        outcome,
        root_cause,
    }
}
