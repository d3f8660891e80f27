"""RNN encoder–decoder, with or without attention.

    none       the decoder sees the source only through its initial state (Sutskever et al., 2014)
    bahdanau   additive attention, queried with the previous decoder state, whose context is an input
               to the RNN step (Bahdanau, Cho & Bengio, 2015)
    luong_dot, luong_general
               multiplicative attention, queried with the new decoder state; the attentional state
               h̃_t = tanh(W_c [c_t; h_t]) makes the prediction and is fed to the next step ("input feeding",
               Luong, Pham & Manning, 2015)

The encoder is a (bi)directional GRU or LSTM. Each direction has half the decoder's hidden size, so the
concatenated final states of the two directions are the decoder's initial state, layer for layer.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lab.errors import LabError
from nlp.models.base import Seq2SeqModel, Tensors
from nlp.tokenization import PAD_ID

Cell = Literal["gru", "lstm"]
AttentionKind = Literal["none", "bahdanau", "luong_dot", "luong_general"]
RNN_CLASSES: dict[str, type[nn.RNNBase]] = {"gru": nn.GRU, "lstm": nn.LSTM}


def attend(scores: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over the real source positions of `scores` (B, S); returns the context (B, H) and the weights."""
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    context = torch.bmm(weights.unsqueeze(1), values).squeeze(1)
    return context, weights


class BahdanauAttention(nn.Module):
    """score(s, h_j) = vᵀ tanh(W s + U h_j). U h_j does not depend on the step: it is computed once per sentence."""

    def __init__(self, query_size: int, key_size: int, attention_dim: int) -> None:
        super().__init__()
        self.W = nn.Linear(query_size, attention_dim, bias=False)
        self.U = nn.Linear(key_size, attention_dim, bias=False)
        self.v = nn.Linear(attention_dim, 1, bias=False)

    def project_keys(self, annotations: torch.Tensor) -> torch.Tensor:
        return self.U(annotations)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.v(torch.tanh(self.W(query).unsqueeze(1) + keys)).squeeze(-1)
        return attend(scores, values, mask)


class LuongAttention(nn.Module):
    """dot: score(h_t, h̄_s) = h_tᵀ h̄_s; general: h_tᵀ W_a h̄_s, where W_a h̄_s is computed once per sentence."""

    def __init__(self, size: int, score: Literal["dot", "general"]) -> None:
        super().__init__()
        self.W_a = nn.Linear(size, size, bias=False) if score == "general" else None

    def project_keys(self, annotations: torch.Tensor) -> torch.Tensor:
        return annotations if self.W_a is None else self.W_a(annotations)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.bmm(keys, query.unsqueeze(2)).squeeze(2)
        return attend(scores, values, mask)


class Encoder(nn.Module):
    """Reads the source in both directions; one annotation h_j = [→h_j; ←h_j] per source token."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_layers: int, cell: Cell,
                 bidirectional: bool, dropout: float) -> None:
        super().__init__()
        self.directions = 2 if bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)
        self.rnn = RNN_CLASSES[cell](embedding_dim, hidden_size // self.directions, num_layers, batch_first=True,
                                     bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)

    def forward(self, source: torch.Tensor, source_mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Annotations (B, S, H) and the final states (B, layers, H): [hidden] for a GRU, [hidden, cell] for an LSTM."""
        embedded = self.dropout(self.embedding(source))
        lengths = source_mask.sum(dim=1).cpu()
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        outputs, final = self.rnn(packed)
        annotations, _ = pad_packed_sequence(outputs, batch_first=True, total_length=source.size(1))
        finals = list(final) if isinstance(final, tuple) else [final]
        return annotations, [self._join_directions(f) for f in finals]

    def _join_directions(self, final: torch.Tensor) -> torch.Tensor:
        """(layers·directions, B, H/directions) → (B, layers, H), forward and backward side by side."""
        layers_x_directions, batch, size = final.shape
        final = final.view(layers_x_directions // self.directions, self.directions, batch, size)
        return final.permute(2, 0, 1, 3).reshape(batch, -1, self.directions * size)


class RNNSeq2Seq(Seq2SeqModel):
    """GRU/LSTM encoder–decoder with no, additive (Bahdanau) or multiplicative (Luong) attention."""

    def __init__(self, source_vocab_size: int, target_vocab_size: int, cell: Cell = "gru",
                 attention: AttentionKind = "bahdanau", embedding_dim: int = 256, hidden_size: int = 512,
                 num_layers: int = 1, bidirectional: bool = True, dropout: float = 0.2,
                 attention_dim: int | None = None, teacher_forcing: float = 1.0) -> None:
        super().__init__()
        if cell not in RNN_CLASSES:
            raise LabError(f"unknown RNN cell {cell!r} (valid: gru, lstm)")
        if attention not in ("none", "bahdanau", "luong_dot", "luong_general"):
            raise LabError(f"unknown attention {attention!r} (valid: none, bahdanau, luong_dot, luong_general)")
        if bidirectional and hidden_size % 2:
            raise LabError(f"hidden_size={hidden_size} must be even: each encoder direction gets half of it")
        if not 0.0 <= teacher_forcing <= 1.0:
            raise LabError(f"teacher_forcing={teacher_forcing} must be a probability between 0 and 1")
        self.cell, self.attention_kind, self.hidden_size = cell, attention, hidden_size
        self.teacher_forcing = teacher_forcing

        self.encoder = Encoder(source_vocab_size, embedding_dim, hidden_size, num_layers, cell, bidirectional, dropout)
        self.embedding = nn.Embedding(target_vocab_size, embedding_dim, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        # Bahdanau feeds the context c_t into the RNN step; Luong feeds the previous attentional state h̃_{t-1}.
        rnn_input = embedding_dim + (0 if attention == "none" else hidden_size)
        self.rnn = RNN_CLASSES[cell](rnn_input, hidden_size, num_layers, batch_first=True,
                                     dropout=dropout if num_layers > 1 else 0.0)
        if attention == "bahdanau":
            self.attention = BahdanauAttention(hidden_size, hidden_size, attention_dim or hidden_size)
            self.deep_output = nn.Linear(2 * hidden_size + embedding_dim, hidden_size)  # from s_t, c_t and y_{t-1}
        elif attention in ("luong_dot", "luong_general"):
            self.attention = LuongAttention(hidden_size, "dot" if attention == "luong_dot" else "general")
            self.W_c = nn.Linear(2 * hidden_size, hidden_size, bias=False)
        self.generator = nn.Linear(hidden_size, target_vocab_size)

    # --- encoder ---------------------------------------------------------------------------------------------------
    def encode(self, source: torch.Tensor, source_mask: torch.Tensor) -> Tensors:
        annotations, finals = self.encoder(source, source_mask)
        memory = {"annotations": annotations, "source_mask": source_mask, "final_hidden": finals[0]}
        if self.cell == "lstm":
            memory["final_cell"] = finals[1]
        if self.attention_kind != "none":
            memory["keys"] = self.attention.project_keys(annotations)
        return memory

    def init_state(self, memory: Tensors, capacity: int | None = None) -> Tensors:
        state = {"hidden": memory["final_hidden"]}
        if self.cell == "lstm":
            state["cell"] = memory["final_cell"]
        if self.attention_kind.startswith("luong"):
            state["attentional"] = memory["annotations"].new_zeros(len(memory["annotations"]), self.hidden_size)
        return state

    # --- one decoder step ------------------------------------------------------------------------------------------
    def _rnn_step(self, rnn_input: torch.Tensor, state: Tensors) -> tuple[torch.Tensor, Tensors]:
        """Advance the stacked RNN by one step; returns the top layer's output (B, H) and the new hidden state."""
        hidden = state["hidden"].transpose(0, 1).contiguous()  # the state is batch-first, nn.RNN wants layers first
        if self.cell == "lstm":
            output, (hidden, cell) = self.rnn(rnn_input.unsqueeze(1), (hidden, state["cell"].transpose(0, 1).contiguous()))
            return output.squeeze(1), {"hidden": hidden.transpose(0, 1), "cell": cell.transpose(0, 1)}
        output, hidden = self.rnn(rnn_input.unsqueeze(1), hidden)
        return output.squeeze(1), {"hidden": hidden.transpose(0, 1)}

    def decode_step(self, previous: torch.Tensor, memory: Tensors, state: Tensors, need_attention: bool = False
                    ) -> tuple[torch.Tensor, Tensors, torch.Tensor | None]:
        embedded = self.dropout(self.embedding(previous))
        weights = None
        if self.attention_kind == "none":
            output, state = self._rnn_step(embedded, state)
            features = output
        elif self.attention_kind == "bahdanau":
            s_previous = state["hidden"][:, -1]  # the query is the state before this step
            context, weights = self.attention(s_previous, memory["keys"], memory["annotations"], memory["source_mask"])
            s_t, state = self._rnn_step(torch.cat([embedded, context], dim=-1), state)
            features = torch.tanh(self.deep_output(torch.cat([s_t, context, embedded], dim=-1)))
        else:
            h_t, new_state = self._rnn_step(torch.cat([embedded, state["attentional"]], dim=-1), state)
            context, weights = self.attention(h_t, memory["keys"], memory["annotations"], memory["source_mask"])
            features = torch.tanh(self.W_c(torch.cat([context, h_t], dim=-1)))
            state = {**new_state, "attentional": features}
        logits = self.generator(self.dropout(features))
        return logits, state, (weights if need_attention else None)

    # --- training: the same steps over the whole target, mostly fed the reference tokens -------------------------
    def forward(self, source: torch.Tensor, source_mask: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        memory = self.encode(source, source_mask)
        state = self.init_state(memory)
        previous = target_in[:, 0]
        all_logits = []
        for t in range(target_in.size(1)):
            logits, state, _ = self.decode_step(previous, memory, state)
            all_logits.append(logits)
            if t + 1 < target_in.size(1):
                previous = target_in[:, t + 1]
                if self.training and self.teacher_forcing < 1.0:
                    # Scheduled-sampling style: some positions get the model's own prediction instead.
                    use_reference = torch.rand(previous.shape, device=previous.device) < self.teacher_forcing
                    previous = torch.where(use_reference, previous, logits.argmax(dim=-1))
        return torch.stack(all_logits, dim=1)
