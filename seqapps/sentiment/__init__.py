"""Sentiment analysis: a recurrent text classifier (Embedding -> (Bi)RNN -> pooling -> softmax)."""
