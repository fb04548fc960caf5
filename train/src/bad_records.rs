//! `--max-bad-records`: the distinct records that failed to decode and were
//! replaced, counted over every rank of a run so that all ranks stop at the
//! same step with the same message.

use std::collections::HashSet;

use fnc_augment::AugmentError;

use crate::dist::ProcessGroup;
use crate::error::TrainError;

/// The distinct bad records replaced so far, against `--max-bad-records`.
#[derive(Debug)]
pub(crate) struct BadRecords {
    max: u64,
    pub named: Vec<String>,
    seen: HashSet<String>,
}

impl BadRecords {
    pub fn new(max: u64, named: Vec<String>) -> BadRecords {
        let seen = named.iter().cloned().collect();
        BadRecords { max, named, seen }
    }

    /// Counts a batch's bad records (in a data-parallel run every rank's, in
    /// rank order); a record seen before is not counted again. `report` sees
    /// each of this rank's new ones once. Over the limit, every rank returns
    /// the same error.
    ///
    /// In a data-parallel run the same collective says whether rank 0 failed
    /// to write the run directory after the last step (`writer_failed`):
    /// then every rank stops with [`TrainError::RankZero`] (rank 0 returns its
    /// own error instead).
    pub fn add(
        &mut self,
        bad: Vec<AugmentError>,
        report: &dyn Fn(&AugmentError),
        group: Option<&ProcessGroup>,
        writer_failed: bool,
    ) -> Result<(), TrainError> {
        let mut mine = Vec::new();
        for e in bad {
            let name = e.to_string();
            if !self.seen.contains(&name) && !mine.contains(&name) {
                report(&e);
                mine.push(name);
            }
        }
        let all = match group {
            None => mine,
            Some(g) => {
                let n =
                    crate::host::upload(&[mine.len() as i64, i64::from(writer_failed)], g.device);
                g.all_reduce(&n)?;
                crate::host::note_read();
                let n = Vec::<i64>::try_from(&n.to_device(tch::Device::Cpu))?;
                if n[1] > 0 {
                    return Err(TrainError::RankZero {
                        detail: "it could not write the run directory (its error says why)".into(),
                    });
                }
                if n[0] == 0 {
                    return Ok(());
                }
                g.all_gather_bytes(mine.join("\n").as_bytes())?
                    .into_iter()
                    .flat_map(|b| {
                        String::from_utf8_lossy(&b)
                            .lines()
                            .map(String::from)
                            .collect::<Vec<_>>()
                    })
                    .collect()
            }
        };
        for name in all {
            if !self.seen.insert(name.clone()) {
                continue;
            }
            self.named.push(name.clone());
            if self.named.len() as u64 > self.max {
                return Err(TrainError::TooManyBadRecords {
                    count: self.named.len(),
                    max: self.max,
                    last: name,
                });
            }
        }
        Ok(())
    }
}
