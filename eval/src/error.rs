/// Errors of evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{what}: {detail}")]
    Input { what: String, detail: String },
    #[error(transparent)]
    Train(#[from] fnc_train::TrainError),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Augment(#[from] fnc_augment::AugmentError),
}
