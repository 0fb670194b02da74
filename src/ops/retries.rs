//! The retry schedule: delivery logs due for another attempt.
