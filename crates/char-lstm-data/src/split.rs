//! The train/validation split of an encoded text, by position.

use std::ops::Range;

/// Which token positions train and which validate.
///
/// Validation is the last `valid_fraction` of the text, as in the PyTorch reference
/// (`split = int(len * (1 - valid_fraction))`). Training windows are cut from `train` alone, so
/// none of them reads validation text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextSplit {
    /// Token positions used for training.
    pub train: Range<usize>,
    /// Token positions used for validation.
    pub valid: Range<usize>,
}

impl TextSplit {
    /// Splits `len` tokens so that the last `valid_fraction` validate.
    ///
    /// With `valid_fraction == 0` the text is too precious to split (the tutorial's one-sentence
    /// example): validation then runs on the training text, and [`TextSplit::valid_is_train`]
    /// says so.
    pub fn by_position(len: usize, valid_fraction: f64) -> Self {
        if valid_fraction <= 0.0 {
            return Self {
                train: 0..len,
                valid: 0..len,
            };
        }
        let split = (len as f64 * (1.0 - valid_fraction)) as usize;
        Self {
            train: 0..split,
            valid: split..len,
        }
    }

    /// True when there is no held-out text and validation reuses the training text.
    pub fn valid_is_train(&self) -> bool {
        self.train == self.valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_int_of_len_times_point_nine() {
        // Python: int(1115394 * 0.9) == 1003854
        let split = TextSplit::by_position(1_115_394, 0.1);
        assert_eq!(split.train, 0..1_003_854);
        assert_eq!(split.valid, 1_003_854..1_115_394);
        assert!(!split.valid_is_train());
    }

    #[test]
    fn zero_fraction_validates_on_training_text() {
        let split = TextSplit::by_position(80, 0.0);
        assert_eq!(split.train, 0..80);
        assert!(split.valid_is_train());
    }
}
