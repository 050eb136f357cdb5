//! The convention table: which attribute values mean which step.
