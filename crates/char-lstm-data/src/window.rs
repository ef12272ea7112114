//! Sliding windows over an encoded text, as a Burn [`Dataset`].

use std::ops::Range;
use std::sync::Arc;

use burn::data::dataset::{Dataset, DatasetError};

use crate::error::DataError;

/// One training example: `seq_len` input ids and the `seq_len` ids that follow each of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextWindow {
    /// `text[start..start + seq_len]`.
    pub input: Vec<u32>,
    /// `text[start + 1..start + seq_len + 1]`.
    pub target: Vec<u32>,
}

/// Windows of `seq_len` input tokens (and the `seq_len` targets after them) inside `range`:
/// sliding ([`TextWindows::new`]) or in contiguous streams ([`TextWindows::streams`]).
#[derive(Debug, Clone)]
pub struct TextWindows {
    tokens: Arc<[u32]>,
    range: Range<usize>,
    seq_len: usize,
    layout: Layout,
    len: usize,
}

/// Where window `index` starts.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// At `index * stride`.
    Sliding { stride: usize },
    /// Window `index` is batch `index / streams`, stream `index % streams`; stream `s` covers
    /// `[s * stream_len, (s + 1) * stream_len)`.
    Streams { streams: usize, stream_len: usize },
}

impl TextWindows {
    /// Cuts windows from `tokens[range]`.
    ///
    /// `part` names the text in the error when it is shorter than one window
    /// (`seq_len + 1` tokens).
    ///
    /// # Panics
    /// If `seq_len` or `stride` is zero or `range` lies outside `tokens`: the configuration
    /// is validated before data is cut.
    pub fn new(
        tokens: Arc<[u32]>,
        range: Range<usize>,
        seq_len: usize,
        stride: usize,
        part: &'static str,
    ) -> Result<Self, DataError> {
        assert!(
            seq_len > 0 && stride > 0,
            "seq_len and stride must be positive"
        );
        assert!(range.end <= tokens.len(), "range outside the text");
        let available = range.len();
        if available < seq_len + 1 {
            return Err(DataError::TooShort {
                part,
                len: available,
                seq_len,
                needed: seq_len + 1,
            });
        }
        let len = (available - seq_len - 1) / stride + 1;
        Ok(Self {
            tokens,
            range,
            seq_len,
            layout: Layout::Sliding { stride },
            len,
        })
    }

    /// Cuts `tokens[range]` into `streams` contiguous streams of equal length and each stream
    /// into consecutive windows, ordered so that every `streams` consecutive items form a batch
    /// whose row `s` continues row `s` of the batch before: what truncated backpropagation
    /// through time needs (char-rnn's layout). Read it in order, `streams` at a time.
    ///
    /// # Panics
    /// If `seq_len` or `streams` is zero or `range` lies outside `tokens`.
    pub fn streams(
        tokens: Arc<[u32]>,
        range: Range<usize>,
        seq_len: usize,
        streams: usize,
        part: &'static str,
    ) -> Result<Self, DataError> {
        assert!(
            seq_len > 0 && streams > 0,
            "seq_len and streams must be positive"
        );
        assert!(range.end <= tokens.len(), "range outside the text");
        // Each stream needs one target past its last input.
        let stream_len = range.len().saturating_sub(1) / streams;
        let batches = stream_len / seq_len;
        if batches == 0 {
            return Err(DataError::TooShort {
                part,
                len: range.len(),
                seq_len,
                needed: streams * seq_len + 1,
            });
        }
        Ok(Self {
            tokens,
            range,
            seq_len,
            layout: Layout::Streams {
                streams,
                stream_len,
            },
            len: batches * streams,
        })
    }

    /// The window length.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// The token position where window `index` starts.
    pub fn start(&self, index: usize) -> usize {
        self.range.start
            + match self.layout {
                Layout::Sliding { stride } => index * stride,
                Layout::Streams {
                    streams,
                    stream_len,
                } => (index % streams) * stream_len + (index / streams) * self.seq_len,
            }
    }
}

impl Dataset<TextWindow> for TextWindows {
    fn get(&self, index: usize) -> Result<TextWindow, DatasetError> {
        assert!(index < self.len, "window {index} out of {}", self.len);
        let start = self.start(index);
        let slice = &self.tokens[start..start + self.seq_len + 1];
        Ok(TextWindow {
            input: slice[..self.seq_len].to_vec(),
            target: slice[1..].to_vec(),
        })
    }

    fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TextSplit;
    use char_lstm::CharVocab;

    fn encoded(text: &str) -> Arc<[u32]> {
        CharVocab::from_text(text)
            .unwrap()
            .encode(text)
            .unwrap()
            .into()
    }

    #[test]
    fn windows_equal_the_text_slices() {
        let text = "the quick brown fox jumps over the lazy dog";
        let vocab = CharVocab::from_text(text).unwrap();
        let tokens = encoded(text);
        let chars: Vec<char> = text.chars().collect();
        for stride in [1, 3, 7] {
            let windows =
                TextWindows::new(tokens.clone(), 0..tokens.len(), 5, stride, "training").unwrap();
            assert_eq!(windows.len(), (chars.len() - 6) / stride + 1);
            for i in 0..windows.len() {
                let w = windows.get(i).unwrap();
                let s = i * stride;
                let input: String = chars[s..s + 5].iter().collect();
                let target: String = chars[s + 1..s + 6].iter().collect();
                assert_eq!(vocab.decode(&w.input), input);
                assert_eq!(vocab.decode(&w.target), target);
            }
            let last = windows.start(windows.len() - 1);
            assert!(last + 6 <= chars.len() && last + stride + 6 > chars.len());
        }
    }

    #[test]
    fn stream_batches_continue_every_stream() {
        let text: String = (0..1003)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let tokens = encoded(&text);
        let (streams, seq_len) = (4, 10);
        let windows = TextWindows::streams(
            tokens.clone(),
            0..tokens.len(),
            seq_len,
            streams,
            "training",
        )
        .unwrap();
        // (1003 - 1) / 4 = 250 tokens per stream, 25 windows each.
        assert_eq!(windows.len(), 25 * streams);
        for index in 0..windows.len() {
            let (batch, stream) = (index / streams, index % streams);
            let w = windows.get(index).unwrap();
            let start = stream * 250 + batch * seq_len;
            assert_eq!(w.input, tokens[start..start + seq_len], "window {index}");
            assert_eq!(
                w.target,
                tokens[start + 1..start + seq_len + 1],
                "window {index}"
            );
            if batch > 0 {
                let before = windows.get(index - streams).unwrap();
                // Row `stream` of this batch starts where the same row of the batch before ended.
                assert_eq!(
                    before.input.last().copied(),
                    Some(tokens[start - 1]),
                    "window {index}"
                );
                assert_eq!(
                    before.target.last().copied(),
                    w.input.first().copied(),
                    "window {index}"
                );
            }
        }
        // The last target of the last stream is still inside the text.
        let last = windows.get(windows.len() - 1).unwrap();
        assert_eq!(
            last.target.last().copied(),
            Some(tokens[3 * 250 + 25 * seq_len])
        );
        assert!(matches!(
            TextWindows::streams(tokens, 0..30, 10, 4, "training"),
            Err(DataError::TooShort { needed: 41, .. })
        ));
    }

    #[test]
    fn stride_one_covers_every_position() {
        let tokens = encoded("abcdefghij");
        let windows = TextWindows::new(tokens, 0..10, 3, 1, "training").unwrap();
        assert_eq!(windows.len(), 7);
        assert_eq!(windows.get(6).unwrap().target, vec![7, 8, 9]);
    }

    #[test]
    fn training_windows_never_reach_validation_text() {
        let text: String = (0..1000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let tokens = encoded(&text);
        for fraction in [0.05, 0.1, 0.33] {
            let split = TextSplit::by_position(tokens.len(), fraction);
            let train =
                TextWindows::new(tokens.clone(), split.train.clone(), 17, 4, "training").unwrap();
            let last = train.start(train.len() - 1);
            assert!(last + 17 < split.train.end);
            let valid = TextWindows::new(tokens.clone(), split.valid.clone(), 17, 17, "validation")
                .unwrap();
            assert!(valid.start(0) >= split.train.end);
        }
    }

    #[test]
    fn too_short_text_is_an_error() {
        let tokens = encoded("abc");
        let err = TextWindows::new(tokens, 0..3, 3, 1, "validation").unwrap_err();
        assert!(err.to_string().contains("validation"), "{err}");
    }

    proptest::proptest! {
        /// Sliding windows are exactly the text's slices at every stride step, and the last one
        /// is the last that fits.
        #[test]
        fn sliding_windows_cover_the_text_exactly(len in 2usize..300, seq_len in 1usize..40, stride in 1usize..20) {
            proptest::prop_assume!(len > seq_len);
            let tokens: Arc<[u32]> = (0..len as u32).collect();
            let windows = TextWindows::new(tokens.clone(), 0..len, seq_len, stride, "training").unwrap();
            for i in 0..windows.len() {
                let w = windows.get(i).unwrap();
                let s = i * stride;
                proptest::prop_assert_eq!(&w.input[..], &tokens[s..s + seq_len]);
                proptest::prop_assert_eq!(&w.target[..], &tokens[s + 1..s + seq_len + 1]);
            }
            let last = windows.start(windows.len() - 1);
            proptest::prop_assert!(last + seq_len < len && last + stride + seq_len >= len);
        }

        /// Stream windows tile each stream without gaps or overlaps.
        #[test]
        fn stream_windows_tile_each_stream(len in 2usize..400, seq_len in 1usize..20, streams in 1usize..8) {
            let tokens: Arc<[u32]> = (0..len as u32).collect();
            let Ok(windows) = TextWindows::streams(tokens.clone(), 0..len, seq_len, streams, "training") else {
                proptest::prop_assert!((len - 1) / streams < seq_len);
                return Ok(());
            };
            let stream_len = (len - 1) / streams;
            let mut covered = vec![0usize; len];
            for i in 0..windows.len() {
                let w = windows.get(i).unwrap();
                let start = windows.start(i);
                proptest::prop_assert_eq!(start / stream_len, i % streams, "window {} lies in its stream", i);
                proptest::prop_assert_eq!(&w.input[..], &tokens[start..start + seq_len]);
                for c in &mut covered[start..start + seq_len] {
                    *c += 1;
                }
            }
            proptest::prop_assert!(covered.iter().all(|&c| c <= 1), "no position twice");
            proptest::prop_assert_eq!(covered.iter().sum::<usize>(), streams * (stream_len / seq_len) * seq_len);
        }
    }
}
