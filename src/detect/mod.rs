//! Detect: failure signals of a classified trajectory, each a [`Finding`] with a reason.

use crate::model::{Finding, StepAssignment, Trajectory};

#[derive(Debug, Clone, Default)]
pub struct DetectConfig {}

pub fn detect(
    trajectory: &Trajectory,
    steps: &[StepAssignment],
    config: &DetectConfig,
) -> Vec<Finding> {
    let _ = (trajectory, steps, config);
    Vec::new()
}
